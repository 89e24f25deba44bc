"""Memory the system keeps (mode assisted): capture grounded in what was said, surfacing before the
reply, provenance, undo/retry, and the modes. A scripted LLM plays the model; stores are real."""

from __future__ import annotations

import json

import pytest

from memagent.agent import Agent
from memagent.capture import parse_proposals
from memagent.fact_grounding import framed_facts, ground, mentioned_kinds
from memagent.fact_vocabulary import FactVocabulary, load_vocabulary
from memagent.prompts import PromptError, PromptLibrary

from .fake_llm import ScriptedLLM, say
from .test_agent_loop import Recorder
from .test_memory_cli import run


def facts(*pairs: tuple[str, str]) -> str:
    return json.dumps({"facts": [{"kind": kind, "value": value} for kind, value in pairs]}, ensure_ascii=False)


@pytest.fixture
def ja_vocabulary(paths) -> FactVocabulary:
    return load_vocabulary(PromptLibrary(paths, "ja"))


@pytest.fixture
def en_vocabulary(paths) -> FactVocabulary:
    return load_vocabulary(PromptLibrary(paths, "en"))


def grounded(message: str, proposals: list[tuple[str, str]], vocabulary: FactVocabulary) -> list[tuple[str | None, str]]:
    return [(f.kind.key if f.kind else None, f.value) for f in ground(message, proposals, vocabulary)]


# --- grounding: nothing is stored that was not said ------------------------------------------------
def test_values_not_in_the_message_are_never_kept(ja_vocabulary):
    # The few-shot example's facts, copied for a message that states none of them.
    assert grounded("今日はいい天気だね", [("job", "パン屋"), ("pet_name", "ポチ")], ja_vocabulary) == []


def test_a_feeling_about_a_cue_topic_is_not_a_value(ja_vocabulary, en_vocabulary):
    # The 0.5B proposed 苦手 for 「犬は苦手かな。」: it sat next to the cue 犬, and was no dog's name.
    assert grounded("犬は苦手かな。", [("pet_name", "犬"), ("allergy", "苦手")], ja_vocabulary) == []
    assert grounded("My cat is cute.", [("pet_name", "cute")], en_vocabulary) == []
    assert grounded("犬のポチは苦手なものが多い。", [("pet_name", "ポチ")], ja_vocabulary) == [("pet_name", "ポチ")]


def test_the_kind_comes_from_the_cue_words_not_from_the_model(ja_vocabulary):
    # The 0.5B model called the cat's name the user's name; the cue 「猫の名前」 decides.
    assert grounded("うちの猫の名前はミケだよ。", [("name", "ミケ")], ja_vocabulary) == [("pet_name", "ミケ")]
    assert grounded("私の名前は美咲で、猫はタマ。", [("pet_name", "美咲"), ("name", "タマ")], ja_vocabulary) == [
        ("name", "美咲"), ("pet_name", "タマ")]


def test_a_value_written_onto_its_cue_word_says_what_sort_not_which(ja_vocabulary, en_vocabulary):
    # 三毛 + 猫 is a kind of cat; the cat is ミケ. A frame written that way still files (そばアレルギー).
    assert grounded("うちの猫はミケっていう名前で、三毛猫なんだ。", [("pet_name", "三毛"), ("pet_name", "ミケ")],
                    ja_vocabulary) == [(None, "三毛"), ("pet_name", "ミケ")]
    assert grounded("あと、そばアレルギーがあるんだ。", [("allergy", "そば")], ja_vocabulary) == [("allergy", "そば")]
    assert grounded("大阪に住んでるよ。", [("home", "大阪")], ja_vocabulary) == [("home", "大阪")]


def test_a_message_states_one_value_of_a_single_valued_kind(en_vocabulary, ja_vocabulary):
    # The 1.5B model proposed both; as two values of one kind the second replaced the first.
    assert grounded("I work as a nurse at a city hospital.", [("job", "nurse"), ("job", "a city hospital")],
                    en_vocabulary) == [("job", "nurse"), (None, "a city hospital")]  # "at": not what the cue names
    # Kinds that hold several values keep them all.
    assert grounded("妹は由香、弟は健太。", [("family", "由香"), ("family", "健太")], ja_vocabulary) == [
        ("family", "由香"), ("family", "健太")]


def test_a_family_members_line_says_who_they_are(make_agent):
    # 「家族の名前: 由香」 did not answer 「妹の名前、覚えてる？」 on the 1.5B model; the cue names the relation.
    agent, _ = make_agent([say("由香ちゃんっていうんだ！"), facts(("family", "由香"))])
    agent.send("妹の名前は由香っていうの。", Recorder())
    assert "妹の名前: 由香" in agent.store.core.get("human").value
    agent, _ = make_agent([say("Nice name!"), facts(("family", "Yuka"))], language="en")
    agent.send("My sister is called Yuka.", Recorder())
    assert "Sister: Yuka" in agent.store.core.get("human").value


def test_sentence_endings_are_not_part_of_a_value(ja_vocabulary):
    assert grounded("うちの猫の名前はミケだよ", [("pet_name", "ミケだよ")], ja_vocabulary) == [("pet_name", "ミケ")]


def test_questions_state_nothing_and_cue_words_are_not_values(ja_vocabulary, en_vocabulary):
    assert grounded("私の猫の名前、覚えてる？", [("pet_name", "猫")], ja_vocabulary) == []
    assert grounded("Do you remember my cat's name?", [("pet_name", "cat")], en_vocabulary) == []
    assert grounded("好きな食べ物はカレーうどん", [("favorite_food", "食べ物")], ja_vocabulary) == []


def test_a_value_with_no_cue_near_it_is_kept_only_as_the_users_sentence(ja_vocabulary):
    found = ground("カレーうどんが好き。ところで仕事は看護師です。", [("favorite_food", "カレーうどん")], ja_vocabulary)
    assert [(f.kind, f.value, f.sentence) for f in found] == [(None, "カレーうどん", "カレーうどんが好き。")]


def test_width_and_case_are_normalised_and_values_keep_the_users_spelling(en_vocabulary, ja_vocabulary):
    assert grounded("My cat's name is Mike.", [("pet_name", "mike")], en_vocabulary) == [("pet_name", "Mike")]
    assert grounded("うちの猫の名前はＭＩＫＥ", [("pet_name", "MIKE")], ja_vocabulary) == [("pet_name", "MIKE")]


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"facts": "x"}', '{"facts": [{"kind": 1}]}', "\x00" * 50])
def test_malformed_extraction_output_yields_nothing(text):
    assert parse_proposals(text) == []


# --- the agent, end to end with a scripted model ----------------------------------------------------
@pytest.fixture
def make_agent(scripted_agent):
    def make(replies, *, mode: str = "assisted", language: str = "ja", core_limit: int = 2000,
             context_length: int = 8192, recall_nudge: bool = True) -> tuple[Agent, ScriptedLLM]:
        return scripted_agent(replies, context_length=context_length, language=language,
                              memory={"mode": mode, "core_limit": core_limit, "recall_nudge": recall_nudge})

    return make


# --- frames: set phrasings read word for word when the model gives nothing ----------------------------
def framed(message: str, vocabulary: FactVocabulary) -> list[tuple[str, str]]:
    return [(f.kind.key if f.kind else "", f.value) for f in framed_facts(message, vocabulary)]


@pytest.mark.parametrize(("message", "expected"), [
    ("あと、そばアレルギーがあるんだ。", [("allergy", "そば")]),
    ("実は先月、大阪に引っ越したんだ。", [("home", "大阪")]),
    ("今は東京に住んでるよ。", [("home", "東京")]),
    ("趣味は写真を撮ることかな。", [("hobby", "写真")]),
    ("仕事は看護師として働いています。", [("job", "看護師")]),
    ("好きな食べ物はさくらもち！", [("favorite_food", "さくらもち")]),  # a particle inside a kana word stays
    ("パン屋で働いてて、犬のポチがいるよ", [("pet_name", "ポチ"), ("job", "パン屋")]),
    ("東京には住んでないよ。", []),
    ("大阪に住んでないんだ。", []),  # denied: not where the user lives
    ("犬は苦手かな。", []),
    ("私の名前、覚えてる？", []),  # a question states nothing
])
def test_japanese_frames_read_the_value_where_it_stands(ja_vocabulary, message, expected):
    assert framed(message, ja_vocabulary) == expected


@pytest.mark.parametrize(("message", "expected"), [
    ("Also, I have a buckwheat allergy.", [("allergy", "buckwheat")]),
    ("Actually, I moved to Osaka last month.", [("home", "Osaka")]),
    ("I work as a nurse at a city hospital.", [("job", "a nurse")]),
    ("My favorite food is mac and cheese.", [("favorite_food", "mac and cheese")]),
    ("I'm not allergic to anything.", []),
    ("I don't think I moved to Osaka.", []),
    ("Do you remember where I live?", []),
])
def test_english_frames_read_the_value_where_it_stands(en_vocabulary, message, expected):
    assert framed(message, en_vocabulary) == expected


def test_a_frame_keeps_what_the_model_missed_with_its_source(make_agent):
    """The 0.5B proposed the cue word itself (「アレルギー」) for an allergy, and nothing for a move."""
    agent, llm = make_agent([say("そうなんだ、気をつけるね。"), facts(("allergy", "アレルギー")),
                             say("引っ越し、お疲れさま！"), facts()])
    agent.send("あと、そばアレルギーがあるんだ。", Recorder())
    agent.send("実は先月、大阪に引っ越したんだ。", Recorder())
    lines = agent.store.core.get("human").value.splitlines()
    assert "アレルギー: そば" in lines and "住んでいる所: 大阪" in lines
    sources = {fact.value: agent.store.recall.get(fact.message_id) for fact in agent.store.facts.current()}
    assert sources["大阪"] is not None and sources["大阪"].content == "実は先月、大阪に引っ越したんだ。"


def test_a_frames_value_wins_over_the_models_for_its_kind(make_agent):
    agent, llm = make_agent([say("大阪！いいところだね。"), facts(("home", "大阪に"), ("job", "看護師"))])
    agent.send("看護師の仕事で、大阪に引っ越したんだ。", Recorder())
    assert sorted(f.value for f in agent.store.facts.current()) == ["大阪", "看護師"]


def test_a_facts_file_with_a_frame_without_its_value_slot_is_one_clear_error(paths, home):
    shadow = home / "prompts" / "en"
    shadow.mkdir(parents=True)
    (shadow / "facts.toml").write_text('[[kind]]\nkey = "home"\nlabel = "Lives in"\ncues = ["live in"]\n'
                                       'frames = ["I live in"]\n', encoding="utf-8")
    with pytest.raises(PromptError, match=r"facts.toml: not a valid facts file.*\{value\} once"):
        load_vocabulary(PromptLibrary(paths, "en"))


def test_a_stated_fact_is_captured_into_core_memory_with_its_source(make_agent):
    agent, llm = make_agent([say("ミケちゃん、かわいい名前だね！"), facts(("pet_name", "ミケ"))])
    events = Recorder()
    agent.send("うちの猫の名前はミケだよ", events)
    assert events.replies == ["ミケちゃん、かわいい名前だね！"]
    assert "ペットの名前: ミケ" in agent.store.core.get("human").value
    [fact] = agent.store.facts.current()
    source = agent.store.recall.get(fact.message_id)
    assert source is not None and source.content == "うちの猫の名前はミケだよ"
    [captured] = events.of("captured")
    assert captured.data["facts"][0]["message_id"] == fact.message_id
    # The capture call continues the chat prompt (its cached prefix), with the reply in it.
    capture_prompt = llm.requests[1].prompt
    assert capture_prompt.startswith(llm.requests[0].prompt.split("<|im_start|>user")[0])
    assert "ミケちゃん、かわいい名前だね！" in capture_prompt
    assert [e.reason for e in agent.store.core.history("human")] == ["capture"]


def test_a_new_fact_keeps_the_prompt_prefix_so_the_next_reply_reuses_the_cache(make_agent):
    agent, llm = make_agent([say("ミケちゃん、かわいい名前だね！"), facts(("pet_name", "ミケ")), say("今日は晴れだね。")])
    agent.send("うちの猫の名前はミケだよ", Recorder())
    agent.send("今日はいい天気", Recorder())
    system_of = [request.prompt.split("<|im_start|>user")[0] for request in (llm.requests[0], llm.requests[2])]
    assert system_of[0] == system_of[1]  # unchanged: the server evaluates only the new turns
    assert "ミケ" in llm.requests[2].prompt  # the message that stated it is still in view
    agent.context.invalidate_system()  # the next rebuild (a summary, a memory edit) brings the line in
    assert "ペットの名前: ミケ" in agent.context.system().text


def test_a_changed_fact_replaces_its_line(make_agent):
    agent, _ = make_agent([
        say("東京なんだ！"), facts(("home", "東京")),
        say("大阪に引っ越したんだね！"), facts(("home", "大阪")),
    ])
    agent.send("今は東京に住んでるよ。", Recorder())
    agent.send("先月、大阪に引っ越したんだ。", Recorder())
    human = agent.store.core.get("human").value
    assert "住んでいる所: 大阪" in human and "東京" not in human
    current = agent.store.facts.current("home")
    assert [f.value for f in current] == ["大阪"]
    old = [f for f in agent.store.facts.all() if f.value == "東京"][0]
    assert old.superseded_by == current[0].id
    system = agent.context.system().text  # a changed fact rebuilds the prompt: no stale line in view
    assert "住んでいる所: 大阪" in system and "東京" not in system


def test_undo_and_retry_revert_captured_facts(make_agent):
    agent, _ = make_agent([
        say("素敵！"), facts(("job", "看護師")),
        say("看護師さんなんだ、すごい！"), facts(("job", "看護師")),
    ])
    agent.send("仕事は看護師として働いています。", Recorder())
    assert len(agent.store.facts.current()) == 1
    agent.retry(Recorder())  # the turn's capture is undone, then the new reply is captured again
    assert [f.value for f in agent.store.facts.current()] == ["看護師"]
    assert agent.store.core.get("human").value.count("仕事: 看護師") == 1
    assert agent.undo() == "仕事は看護師として働いています。"
    assert agent.store.facts.all() == []
    assert "看護師" not in agent.store.core.get("human").value


def test_a_full_core_block_spills_captured_facts_to_archival(make_agent):
    agent, _ = make_agent([say("いいね！"), facts(("favorite_food", "カレーうどん"))], core_limit=100)
    agent.store.core.set("human", "x" * 98)
    agent.send("好きな食べ物はカレーうどん！", Recorder())
    [fact] = agent.store.facts.current()
    assert fact.block is None and fact.passage_id is not None
    assert agent.store.archival.get(fact.passage_id).text == "好きな食べ物: カレーうどん"


def test_the_personas_own_promise_is_kept_in_its_persona_block_as_it_said_it(make_agent):
    promise = "じゃあ今度、その本を取っておくね！"
    agent, llm = make_agent([say(f"いいね、読んでみたい！{promise}"), say("取っておこうか？"), say("うん、ゆっくり読んでね。")])
    events = Recorder()
    agent.send("古い文庫本が好きなんだ", events)  # no cue word of a listed kind: no extraction call
    assert len(llm.requests) == 1
    persona = agent.store.core.get("persona").value
    assert persona.endswith(f"約束: {promise}")
    [note, fact] = agent.store.facts.current()  # the user's sentence as said, then the promise
    assert (note.kind, note.value) == ("note", "古い文庫本が好きなんだ")
    assert (fact.kind, fact.value, fact.block) == ("promise", promise, "persona")
    source = agent.store.recall.get(fact.message_id)
    assert source is not None and source.reply == f"いいね、読んでみたい！{promise}"
    assert events.of("captured")[0].data["facts"][-1]["line"] == f"約束: {promise}"
    # A question offers, it does not promise; a reply with no promise word keeps nothing.
    agent.send("どうしようかな", Recorder())
    agent.send("ありがとう", Recorder())
    assert [f.kind for f in agent.store.facts.current()] == ["note", "promise"]
    for _ in range(3):
        agent.undo()
    assert agent.store.facts.all() == [] and "約束" not in agent.store.core.get("persona").value


def test_memory_show_names_the_reply_a_promise_came_from(make_agent, capsys):
    agent, _ = make_agent([say("わかった、次に来たら教えてあげるね。")])
    agent.send("あの本の続き、気になるな", Recorder())
    name = agent.store.name
    agent.store.close()
    code, out, _ = run(capsys, "memory", "show", "--agent", name, "--history")
    assert code == 0
    assert "約束: わかった、次に来たら教えてあげるね。  [core:persona] ← message #" in out
    assert ": 'わかった、次に来たら教えてあげるね。'" in out


def test_english_promises_are_kept_too(make_agent):
    agent, _ = make_agent([say("Oh, I love that one. I'll save you a copy next time you come!")], language="en")
    agent.send("I've been looking for that old novel", Recorder())
    assert "Promised: I'll save you a copy next time you come!" in agent.store.core.get("persona").value


def test_messages_without_cue_words_cost_no_model_call(make_agent):
    agent, llm = make_agent([say("こんにちは！")])
    agent.send("こんにちは", Recorder())
    assert len(llm.requests) == 1


def test_a_failed_capture_costs_nothing(make_agent):
    agent, llm = make_agent([say("へえ！")])  # the extraction call finds the script empty and fails
    events = Recorder()
    stats = agent.send("うちの猫の名前はミケだよ", events)
    assert events.replies == ["へえ！"] and not stats.failed
    assert agent.store.facts.all() == [] and not events.of("captured")


def test_surfaced_memories_join_the_users_message_right_before_the_reply(make_agent):
    agent, llm = make_agent([say("覚えてるよ、ミケだよね！"), facts(), say("うん、またね！"), facts()])
    message = agent.store.recall.add("user", "うちの猫の名前はミケだよ", kind="user_message", turn_id=1)
    agent.store.facts.add(kind="pet_name", label="ペットの名前", value="ミケ", line="ペットの名前: ミケ", block="human",
                          turn_id=1, message_id=message.id)
    agent.store.recall.set_in_context([message.id], False)  # it has left the window
    events = Recorder()
    stats = agent.send("私の猫の名前、覚えてる？", events)
    [recalled] = events.of("recalled")
    assert [m["text"] for m in recalled.data["memories"]] == ["ペットの名前: ミケ"]
    assert stats.recalled == 1
    prompt = llm.requests[0].prompt
    user_turn = prompt[prompt.rindex("<|im_start|>user"):prompt.rindex("<|im_start|>assistant")]
    assert user_turn.index("私の猫の名前、覚えてる？") < user_turn.index("（さくらが覚えていること: ペットの名前: ミケ）")
    # In the prompt only: the stored message is what the user typed.
    assert agent.store.recall.recent(1, kinds=["user_message"])[0].content == "私の猫の名前、覚えてる？"
    # The next turn's prompt no longer holds it.
    agent.send("ありがとう", events)
    assert "さくらが覚えていること" not in llm.requests[-1].prompt


def test_a_question_asks_for_the_kind_of_its_longest_cue(ja_vocabulary, en_vocabulary):
    ja, en = ja_vocabulary.kinds, en_vocabulary.kinds
    # 「名前は」 is a cue of the user's name, but inside 「猫の名前は」 it is the pet's.
    assert mentioned_kinds("うちの猫の名前は？", ja) == {"pet_name"}
    assert mentioned_kinds("私の名前と猫の名前、覚えてる？", ja) == {"name", "pet_name"}
    assert mentioned_kinds("Do you remember my name?", en) == {"name"}
    assert mentioned_kinds("What's my cat called?", en) == {"pet_name"}
    assert mentioned_kinds("Where do I live now?", en) == {"home"}
    assert mentioned_kinds("今日はいい天気だね", ja) == set()


def _cat_named_mike(agent: Agent) -> None:
    message = agent.store.recall.add("user", "うちの猫の名前はミケだよ", kind="user_message", turn_id=1)
    agent.store.facts.add(kind="pet_name", label="ペットの名前", value="ミケ", line="ペットの名前: ミケ", block="human",
                          turn_id=1, message_id=message.id)


def test_a_question_for_a_remembered_fact_steers_the_reply_towards_its_value(make_agent):
    agent, llm = make_agent([say("ミケだよね！"), facts(), say("ミケ、かわいいよね"), facts()])
    _cat_named_mike(agent)
    agent.send("うちの猫の名前は？", Recorder())
    nudge = llm.requests[0].recall_nudge
    assert nudge is not None and nudge.values == ("ミケ",)
    # A statement that mentions the cat asks for nothing: no steering.
    agent.send("猫の名前、変えようかな。", Recorder())
    assert llm.requests[-2].recall_nudge is None


def test_a_question_about_the_persona_is_not_steered_towards_the_users_fact(make_agent):
    agent, llm = make_agent([say("私は猫飼ってないよ〜"), say("わたしはいちご大福！"), say("ミケだよね！")])
    _cat_named_mike(agent)
    agent.send("あなたの猫の名前は？", Recorder())
    agent.send("さくらの猫の名前は？", Recorder())
    agent.send("私の猫の名前は？", Recorder())
    assert [request.recall_nudge for request in llm.requests[:2]] == [None, None]
    assert llm.requests[2].recall_nudge is not None and llm.requests[2].recall_nudge.values == ("ミケ",)


def test_english_questions_about_the_persona_are_told_apart(en_vocabulary):
    assert en_vocabulary.asks_about_persona("What's your cat's name?", "Sakura")
    assert en_vocabulary.asks_about_persona("What is Sakura's favorite food?", "Sakura")
    assert not en_vocabulary.asks_about_persona("Do you remember my cat's name?", "Sakura")
    assert not en_vocabulary.asks_about_persona("Do you know it yourself? My cat's name?", "Sakura")


def test_a_reply_that_misses_the_value_asked_for_is_generated_again_insisting(make_agent):
    agent, llm = make_agent([say("えー、なんだっけ？"), say("ミケだよ！忘れるわけないじゃん")])
    llm.steers = True
    _cat_named_mike(agent)
    events = Recorder()
    stats = agent.send("うちの猫の名前は？", events)
    assert events.replies == ["ミケだよ！忘れるわけないじゃん"]
    assert [request.recall_nudge.insist for request in llm.requests] == [False, True]
    assert stats.recall_retries == 1


def test_when_insisting_misses_too_the_first_reply_is_kept(make_agent):
    agent, llm = make_agent([say("えー、なんだっけ？"), say("うーん、思い出せない")])
    llm.steers = True
    _cat_named_mike(agent)
    events = Recorder()
    agent.send("うちの猫の名前は？", events)
    assert events.replies == ["えー、なんだっけ？"]
    assert [m.content for m in agent.store.recall.all() if m.kind == "assistant_call"][-1] == "えー、なんだっけ？"


def test_a_backend_that_cannot_steer_is_not_asked_again(make_agent):
    agent, llm = make_agent([say("えー、なんだっけ？")])
    _cat_named_mike(agent)
    events = Recorder()
    agent.send("うちの猫の名前は？", events)
    assert events.replies == ["えー、なんだっけ？"] and len(llm.requests) == 1


def test_the_recall_nudge_can_be_turned_off(make_agent):
    agent, llm = make_agent([say("ミケだよね！"), facts()], recall_nudge=False)
    _cat_named_mike(agent)
    events = Recorder()
    agent.send("うちの猫の名前は？", events)
    assert events.of("recalled") and llm.requests[0].recall_nudge is None


def test_earlier_messages_that_left_the_window_are_surfaced_by_their_words(make_agent):
    agent, llm = make_agent([say("北海道の旅行、楽しかったって言ってたね！")])
    said = "去年の夏に北海道へ旅行して、富良野のラベンダー畑を見たよ"
    old = agent.store.recall.add("user", said, kind="user_message", turn_id=1)
    agent.store.recall.add("user", "今日は雨だね", kind="user_message", turn_id=2)
    agent.store.recall.set_in_context([old.id], False)
    events = Recorder()
    agent.send("富良野のラベンダー畑の話、覚えてる？", events)
    [recalled] = events.of("recalled")
    assert recalled.data["memories"][0]["source"] == "recall"
    assert "ラベンダー畑" in recalled.data["memories"][0]["text"]
    assert "ラベンダー畑を見たよ" in llm.requests[0].prompt


def test_messages_still_in_view_are_not_surfaced_again(make_agent):
    agent, _ = make_agent([say("うん、ラベンダー畑ね！")])
    agent.store.recall.add("user", "富良野のラベンダー畑を見たよ", kind="user_message", turn_id=1)
    events = Recorder()
    agent.send("富良野のラベンダー畑、きれいだった", events)
    assert not events.of("recalled")


def test_a_reply_that_only_copies_a_recalled_memory_is_regenerated(make_agent):
    agent, _ = make_agent([say("- ペットの名前: ミケ"), say("ミケちゃんでしょ？覚えてるよ！")])
    message = agent.store.recall.add("user", "うちの猫の名前はミケ", kind="user_message", turn_id=1)
    agent.store.facts.add(kind="pet_name", label="ペットの名前", value="ミケ", line="ペットの名前: ミケ", block="human",
                          turn_id=1, message_id=message.id)
    events = Recorder()
    agent.send("猫の名前、覚えてる？", events)
    assert events.replies == ["ミケちゃんでしょ？覚えてるよ！"]


@pytest.mark.parametrize("mode", ["agent", "off"])
def test_other_modes_neither_surface_nor_capture(make_agent, mode):
    agent, llm = make_agent([say("そうなんだ！")], mode=mode)
    message = agent.store.recall.add("user", "うちの猫の名前はミケ", kind="user_message", turn_id=1)
    agent.store.recall.set_in_context([message.id], False)
    events = Recorder()
    agent.send("うちの猫の名前はミケだよ。覚えてる？", events)
    assert len(llm.requests) == 1 and not events.of("recalled") and not events.of("captured")
    functions = '"function": "core_memory_append"' in llm.requests[0].grammar or "core_memory_append" in llm.requests[0].grammar
    assert functions == (mode == "agent")  # off: the agent can only send messages


def test_background_capture_is_settled_before_the_next_turn(make_agent):
    agent, _ = make_agent([say("かわいい！"), facts(("pet_name", "ミケ")), say("うん！")])
    agent.capture_in_background = True
    first, second = Recorder(), Recorder()
    agent.send("うちの猫の名前はミケだよ", first)
    agent.send("こんにちは", second)
    assert second.of("captured") and second.of("captured")[0].text == "ペットの名前: ミケ"
    assert agent.store.facts.current()[0].value == "ミケ"


def test_memory_show_lists_facts_with_their_source(make_agent, capsys):
    agent, _ = make_agent([say("素敵！"), facts(("job", "看護師"))])
    agent.send("仕事は看護師として働いています。", Recorder())
    name = agent.store.name
    agent.store.close()
    code, out, _ = run(capsys, "memory", "show", "--agent", name, "--json")
    [fact] = json.loads(out)["facts"]
    assert code == 0 and fact["line"] == "仕事: 看護師"
    assert fact["source"]["text"] == "仕事は看護師として働いています。"
    code, out, _ = run(capsys, "memory", "show", "--agent", name, "--history")
    assert "仕事: 看護師  [core:human] ← message #" in out and " capture" in out


@pytest.mark.parametrize("text", ['"猫" AND NEAR(犬*)', "\x00\x00猫の名前\x00", "あ" * 100_000, "  ", "猫"])
def test_any_message_text_is_safe_to_surface_and_capture(make_agent, text):
    agent, _ = make_agent([say("うん、聞いてるよ！"), facts(("pet_name", "ミケ"))])
    old = agent.store.recall.add("user", "うちの猫の名前はミケ、犬はポチ", kind="user_message", turn_id=1)
    agent.store.recall.set_in_context([old.id], False)
    memories = agent.surfacer.surface(text)
    assert all(m.text for m in memories)
    from memagent.fact_grounding import ground
    assert all(f.value in text for f in ground(text, [("pet_name", "ミケ"), ("pet_name", text)], agent.capturer.vocabulary))


def test_capture_still_runs_when_the_window_is_full(make_agent):
    agent, llm = make_agent([say("いいね！"), facts(("favorite_food", "カレーうどん"))], context_length=2048)
    turn = 0
    # Fill the window until the reply prompt just fits: no room left for the extraction prompt on top.
    while agent.context.build().tokens < agent.context.budget - 120:
        turn += 1
        agent.store.recall.add("user", f"雑談その{turn}: 今日は駅前のパン屋さんに寄ったよ。", kind="user_message", turn_id=turn)
    agent.send("好きな食べ物はカレーうどん！", Recorder())
    assert [f.value for f in agent.store.facts.current()] == ["カレーうどん"]
    assert len(llm.requests[-1].prompt) < len(llm.requests[0].prompt) + 2000


def test_only_the_sentences_with_cue_words_are_sent_for_extraction(ja_vocabulary):
    from memagent.fact_grounding import cue_sentences

    kinds = ja_vocabulary.kinds
    assert cue_sentences("こんにちは！わたしはゆい。うちの猫の名前はミケだよ。", kinds) == "うちの猫の名前はミケだよ。"
    assert cue_sentences("猫の名前、覚えてる？", kinds) == ""  # a question states nothing: no model call


def test_a_cue_word_at_the_edge_of_a_value_is_cut_off(ja_vocabulary, en_vocabulary):
    assert grounded("あと、そばアレルギーがあるんだ。", [("allergy", "そばアレルギー")], ja_vocabulary) == [("allergy", "そば")]
    assert grounded("Also, I have a buckwheat allergy.", [("allergy", "buckwheat allergy")], en_vocabulary) == [
        ("allergy", "buckwheat")]


def test_earlier_questions_and_replaced_facts_are_not_surfaced(make_agent):
    agent, llm = make_agent([say("大阪だよね！")])
    tokyo = agent.store.recall.add("user", "今は東京に住んでるよ。", kind="user_message", turn_id=1)
    asked = agent.store.recall.add("user", "私って今どこに住んでるんだっけ？", kind="user_message", turn_id=2)
    osaka = agent.store.recall.add("user", "先月、大阪に引っ越したんだ。", kind="user_message", turn_id=3)
    old = agent.store.facts.add(kind="home", label="住んでいる所", value="東京", line="住んでいる所: 東京", block="human",
                                turn_id=1, message_id=tokyo.id)
    agent.store.facts.add(kind="home", label="住んでいる所", value="大阪", line="住んでいる所: 大阪", block="human",
                          turn_id=3, message_id=osaka.id, replaces=old.id)
    agent.store.recall.set_in_context([tokyo.id, asked.id, osaka.id], False)
    events = Recorder()
    agent.send("私って今どこに住んでるんだっけ？", events)
    [recalled] = events.of("recalled")
    assert [m["text"] for m in recalled.data["memories"]] == ["住んでいる所: 大阪"]


def test_a_cards_user_placeholder_becomes_the_name_the_user_gave(make_agent):
    agent, llm = make_agent([say("よろしくね、美咲ちゃん！"), facts(("name", "美咲")), say("うん！")])
    agent.persona = agent.persona.model_copy(update={
        "first_message": "いらっしゃい、{{user}}。今日は何にする？", "scenario": "雨の午後、{{user}}が店にやって来る。"})
    events = Recorder()
    agent.greet(events)
    assert events.replies == ["いらっしゃい、あなた。今日は何にする？"]  # nothing known yet: the default profile's word
    assert "雨の午後、あなたが店にやって来る。" in agent.context.system().text
    agent.send("私の名前は美咲です", Recorder())
    agent.context.invalidate_system()  # the next rebuild (a summary, a memory edit) uses the name
    agent.send("よろしく", Recorder())
    assert "雨の午後、美咲が店にやって来る。" in llm.requests[-1].prompt
    assert "{{user}}" in agent.persona.scenario  # the persona keeps its placeholder


def test_a_reply_copying_the_recalled_lines_opening_is_regenerated(make_agent):
    agent, llm = make_agent([say("(さくらが覚えていること: ペットの名前)はミケだよね、今日はいい天気だからお散歩に行こうよ！"),
                             say("ミケでしょ？覚えてるよ！")])
    _cat_named_mike(agent)
    events = Recorder()
    stats = agent.send("うちの猫の名前は？", events)
    assert events.replies == ["ミケでしょ？覚えてるよ！"]
    assert stats.degenerate_kinds == ["system_note"]


def test_a_reply_that_is_mostly_the_value_asked_for_is_an_answer_not_a_copy(make_agent):
    agent, llm = make_agent([say("写真を撮ることかな、でしょ？")])
    message = agent.store.recall.add("user", "趣味は写真を撮ることかな。", kind="user_message", turn_id=1)
    agent.store.facts.add(kind="hobby", label="趣味", value="写真を撮ることかな", line="趣味: 写真を撮ることかな",
                          block="human", turn_id=1, message_id=message.id)
    events = Recorder()
    stats = agent.send("私の趣味、覚えてる？", events)
    assert events.replies == ["写真を撮ることかな、でしょ？"] and stats.degenerate_kinds == []


def test_a_reply_that_says_the_value_but_copies_the_recalled_line_is_still_a_copy(make_agent):
    agent, llm = make_agent([say("ミケ／ユーザーが前に言った「うちの猫の名前はミケだよ」"), say("ミケでしょ！")])
    _cat_named_mike(agent)
    agent.store.recall.set_in_context([m.id for m in agent.store.recall.all()], False)
    events = Recorder()
    agent.send("うちの猫の名前は？", events)
    assert events.replies == ["ミケでしょ！"]
