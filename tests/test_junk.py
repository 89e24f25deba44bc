"""Degenerate send_message replies: empty, thoughts == message, parroting the user, repeating itself."""

from __future__ import annotations

import pytest

from memagent.conversation import FunctionCall
from memagent.junk import JUNK_KINDS, RULES, JunkKind, Reply, ReplyContext, judge, nearly_equal, normalise_text
from memagent.junk import judge_shown as junk_kind
from memagent.paths import Paths
from memagent.prompts import PromptLibrary


def _reply(message: str, thoughts: str = "ユーザーに返事をする。") -> FunctionCall:
    return FunctionCall(function="send_message", arguments={"message": message}, inner_thoughts=thoughts)


def detect_degenerate(call: FunctionCall, last_user: str | None, recent: list[str],
                      cliches: tuple[str, ...] = ()) -> JunkKind | None:
    context = ReplyContext(last_user=last_user, recent_replies=recent, cliches=cliches)
    return judge(Reply(str(call.arguments.get("message", "")), call.inner_thoughts or ""), context)


def test_normalise_ignores_case_width_space_and_punctuation() -> None:
    assert normalise_text("Ｈｅｌｌｏ,  World!") == normalise_text("hello world")
    assert normalise_text("そう、だね。") == normalise_text("そうだね")
    assert normalise_text("…「」。!?") == ""
    assert normalise_text("😊") == "😊"


@pytest.mark.parametrize("message", ["", "   ", "...", "。", "……", "\n"])
def test_empty_message(message: str) -> None:
    assert detect_degenerate(_reply(message), "やあ", []) == "empty_message"


@pytest.mark.parametrize(
    ("thoughts", "message"),
    [
        ("今日はいい天気ね。", "今日はいい天気ね"),
        ("I missed you.", "i missed you!!"),
        ("そうなんだ、大変だったね", "そうなんだ。 大変だったね。"),
        (
            "昨日の映画の話をもっと聞かせてほしいな、どのシーンが一番好きだった?",
            "昨日の映画の話をもっと聞かせてほしいな。どのシーンが一番好きだったの?",
        ),
    ],
)
def test_thoughts_equal_message(thoughts: str, message: str) -> None:
    assert detect_degenerate(_reply(message, thoughts), None, []) == "thoughts_equal_message"


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("今日は会社で怒られちゃった", "今日は会社で怒られちゃった。"),
        ("I went hiking with my sister yesterday.", "I went hiking with my sister yesterday!"),
        (
            "昨日は妹と一緒に山登りに行って、すごく疲れたけど楽しかった",
            "昨日は妹と一緒に山登りに行って、すごく疲れたけど楽しかったね",
        ),
        # Seen on the 0.5B: the line without its opening, the line behind an interjection.
        ("6回目: さくらさんのおすすめの本を教えて。", "さくらさんのおすすめの本を教えて。"),
        ("2回目: わたしは田中ゆいです。会社でデザインの仕事をしています。", "うわ、田中ゆいです。会社でデザインの仕事をしています。"),
        ("今日は話せて楽しかった。またね！", "うん、話せて楽しかった。またね！"),
        ("I went hiking with my sister yesterday.", "Oh, hiking with my sister yesterday."),
    ],
)
def test_parrots_user(user: str, message: str) -> None:
    assert detect_degenerate(_reply(message), user, []) == "parrots_user"


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("おはよう", "おはよう!"),  # echoing a short greeting is a natural reply
        ("Hi!", "Hi!"),
        ("今日は会社で怒られちゃった", "え、何があったの?"),
        ("I went hiking yesterday.", "Oh nice, where did you go?"),
        ("明日、京都の伏見稲荷大社に行くんだ", "伏見稲荷大社に行くんだ！いいなあ、お土産よろしくね"),
        ("先月、大阪に引っ越したんだ。", "大阪に引っ越したんだね！"),  # an echo that confirms is a natural reply
        ("週末は猫カフェに行こうと思ってるよ。", "猫カフェに行こうと思ってるんだね"),
        ("週末は猫カフェに行こうと思ってるよ。", "いいね、猫カフェに行こうと思ってるなら一緒に行きたいな"),
        ("好きな食べ物はいちご大福！", "いちご大福！おいしいよね。"),
    ],
)
def test_natural_replies_are_not_parroting(user: str, message: str) -> None:
    assert detect_degenerate(_reply(message), user, []) is None


def test_repeated_reply() -> None:
    recent = ["ふーん、それで?", "別にいいけど。"]
    assert detect_degenerate(_reply("別に、いいけど"), "じゃあ行こう", recent) == "repeated_reply"


def test_a_short_reply_repeating_one_of_the_last_few_is_a_repeat() -> None:
    # The 0.5B model answered nine turns in a row with 「どうぞ」, under the length a repeat needed.
    assert detect_degenerate(_reply("どうぞ。"), "好きな食べ物はいちご大福！", ["ふーん、それで?", "どうぞ"]) == "repeated_reply"
    assert junk_kind("どうぞ", ["どうぞ"]) == "repeated_reply"
    assert junk_kind("え？", ["え?", "ええと、それでね"]) == "repeated_reply"
    # Said once long ago, a short reply is a natural thing to say again.
    older = ["うん", "それは大変だったね。", "ケーキ食べたい!", "またね、気をつけて帰ってね。"]
    assert detect_degenerate(_reply("うん"), "疲れたー", older) is None
    assert junk_kind("うん", older) is None


def test_the_same_reply_in_the_other_kana_script_is_a_repeat() -> None:
    # The 0.5B answered a swipe of 「うん...」 with 「ウん...」.
    assert junk_kind("ウん...", ["うん..."]) == "repeated_reply"
    assert detect_degenerate(_reply("ミケ、かわいいね"), "猫飼ってる", ["みけ、かわいいね"]) == "repeated_reply"


def test_nearly_repeated_long_reply() -> None:
    earlier = "そういうところ、あなたらしいわね。でも無理はしないで、ちゃんと休みなさいよ。"
    again = "そういうところ、あなたらしいわね。でも無理はしないで、ちゃんと休みなさい。"
    assert detect_degenerate(_reply(again), "わかった", [earlier]) == "repeated_reply"


def test_a_reply_framed_like_each_of_the_last_two_is_a_repeat() -> None:
    # The 0.5B's session of 「(X)新しい文を追加」 and its seven replies opening 「う、それはへこむね。」.
    framed = ["(ミケの名前)新しい文を追加", "(カレーうどんの好きな食べ物)新しい文を追加"]
    assert detect_degenerate(_reply("(緑茶)新しい文を追加"), "私の好きな飲み物は何だっけ？", framed) == "repeated_reply"
    assert junk_kind("(緑茶)新しい文を追加", framed) == "repeated_reply"
    opened = ["う、それはへこむね。緑茶って何でしたか？", "う、それはへこむね。由香って誰？"]
    assert detect_degenerate(_reply("う、それはへこむね。そばって何？"), "そばアレルギーがあるんだ。", opened) == "repeated_reply"
    # Once, or a short shared opening, is how people talk.
    assert detect_degenerate(_reply("う、それはへこむね。そばって何？"), "そば", opened[:1]) is None
    assert detect_degenerate(_reply("うん、いいね！散歩かあ"), "散歩した", ["うん、いいね！緑茶", "うん、いいね！由香ちゃん"]) is None
    assert junk_kind("That sounds fun, Misaki!", ["That sounds great!", "That sounds hard."]) is None


def test_fresh_reply_is_fine() -> None:
    recent = ["ふーん、それで?", "別にいいけど。"]
    assert detect_degenerate(_reply("ケーキ?仕方ないわね、付き合ってあげる。"), "ケーキ食べに行こう", recent) is None


def test_short_texts_need_exact_match() -> None:
    assert nearly_equal("abcdefg", "abcdefh") is False
    long_text = "abcdefghijklmnopqrstuvwxyz"
    assert nearly_equal(long_text, long_text[:-1] + "!") is True
    assert nearly_equal("", "") is False


def test_the_most_harmful_kind_is_named_and_the_showable_flaw_only_when_nothing_else_is_wrong() -> None:
    # Equal to the thoughts AND to the user's message: the parrot is what counts, since a reply whose
    # only flaw is its thoughts is shown without them.
    text = "今日は本当に楽しかったね"
    assert detect_degenerate(_reply(text, text), text, [text]) == "parrots_user"
    assert detect_degenerate(_reply(text, text), "ケーキ食べた", []) == "thoughts_equal_message"
    assert JUNK_KINDS == ("empty_message", "system_note", "looping", "call_debris", "mixed_scripts",
                          "other_language", "parrots_user", "repeated_reply", "assistant_cliche", "thoughts_equal_message")
    assert [rule.kind for rule in RULES if rule.showable] == ["thoughts_equal_message"]
    severities = [rule.severity for rule in RULES]
    assert severities == sorted(severities, reverse=True)


def test_near_copies_of_shown_texts_are_caught_even_when_short():
    from memagent.junk import copies_any

    assert copies_any("おつかれさま。今日はどうだったか？", ["おつかれさま。今日はどうだった？"])
    assert copies_any("Long day? Tell me about it!", ["Long day? Tell me about it."])
    assert not copies_any("うん、いいね", ["おつかれさま。今日はどうだった？"])
    assert not copies_any("はい", ["はい"])  # too short to call a copy


def test_a_runaway_loop_is_degenerate() -> None:
    assert detect_degenerate(_reply("猫の名前は？" + "わ" * 40), None, []) == "looping"
    assert detect_degenerate(_reply("ha" * 10), None, []) == "looping"
    assert detect_degenerate(_reply("わわ、びっくりした！"), None, []) is None


def test_the_users_whole_line_plus_a_tail_is_parroting() -> None:
    line = "今日は会社で新しいプロジェクトの話があったんだ"
    assert detect_degenerate(_reply(line + "。すごいね！"), line, []) == "parrots_user"
    assert detect_degenerate(_reply("Nice to meet you too!"), "Nice to meet you", []) is None
    line = "仕事は看護師として働いています。"
    assert detect_degenerate(_reply(line + "良い時が来れば。"), line, []) == "parrots_user"


def test_a_reply_cut_out_of_a_system_text_is_a_copy() -> None:
    from memagent.junk import copies_any

    note = "[システム] ユーザーの言葉をそのままくり返している。自分の言葉で、話を一歩進める返事をすること。"
    assert copies_any("自分の言葉で、話を一歩進める返事をすること。", [note])
    system = "あなたは「さくら」。\\n## コアメモリ\\nペットの名前: ミケ\\n好きな食べ物: カレーうどん"
    assert not copies_any("ミケだよね！覚えてるよ。", [system])
    assert not copies_any("カレーうどん、おいしいよね！わたしも好き。", [system])


def test_a_reply_opening_with_a_time_stamp_copies_the_system() -> None:
    assert detect_degenerate(_reply("(2026-12-01 04:38) カレーうどん！"), None, []) == "system_note"
    assert detect_degenerate(_reply("[2026-12-01 04:38] こんにちは"), None, []) == "system_note"
    assert detect_degenerate(_reply("(笑) そうだね"), None, []) is None



@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("了解しました！何かお手伝いできることはありますか？", "assistant_cliche"),
        ("Sure thing. How can I assist you?", "assistant_cliche"),
        ("お手伝いなんていらないでしょ。ほら、座って。", None),  # a character's own words about help
    ],
)
def test_assistant_cliches_from_the_editable_list(message: str, expected: str | None, paths) -> None:
    from memagent.prompts import PromptLibrary

    cliches = PromptLibrary(paths, "ja").word_list("cliches.txt") + PromptLibrary(paths, "en").word_list("cliches.txt")
    assert cliches and not any(line.startswith("#") for line in cliches)
    assert detect_degenerate(_reply(message), "ねえ", [], cliches) == expected


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        ("はい、ミケだよ。何か他にもお手伝いできるんですか？", "はい、ミケだよ。"),
        ("こんにちは！美咲さんだよね。お手伝いできる事があれば、どうぞお知らせください。", "こんにちは！美咲さんだよね。"),
        ("Mike! Is there anything else I can help you with? How can I assist you?", "Mike!"),
        ("何かお手伝いできることはありますか？", None),  # nothing else: regenerated, not emptied
        ("何かお手伝いできることはありますか？ミケだよ。", None),  # not closing: regenerated
        ("ミケだよ。カレーうどん食べたい！", None),  # nothing to drop
    ],
)
def test_closing_assistant_phrases_are_dropped_from_a_real_answer(message: str, kept: str | None, paths) -> None:
    from memagent.junk import without_closing_cliches
    from memagent.prompts import PromptLibrary

    cliches = PromptLibrary(paths, "ja").word_list("cliches.txt") + PromptLibrary(paths, "en").word_list("cliches.txt")
    assert without_closing_cliches(message, cliches) == kept


def test_a_users_own_cliche_list_shadows_the_packaged_one(paths) -> None:
    from memagent.prompts import PromptLibrary

    mine = paths.user_resource_dir("prompts") / "ja" / "cliches.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("# mine\nかしこまりました\n", encoding="utf-8")
    cliches = PromptLibrary(paths, "ja").word_list("cliches.txt")
    assert cliches == ["かしこまりました"]
    assert detect_degenerate(_reply("かしこまりました！"), "お茶ちょうだい", [], cliches) == "assistant_cliche"
    assert detect_degenerate(_reply("何かお手伝いできることはありますか？"), "ねえ", [], cliches) is None


def test_a_quoted_or_braced_system_tag_is_a_system_note() -> None:
    """What the 0.5B wrote when pushed off its copies, and would have been shown."""
    assert detect_degenerate(_reply("'[System]'"), None, []) == "system_note"
    assert detect_degenerate(_reply("'{System}' + '何かお手伝いできることは？'"), None, []) == "system_note"
    assert detect_degenerate(_reply("「[システム]」"), None, []) == "system_note"
    assert detect_degenerate(_reply("'さくら' だよ"), None, []) is None


def test_a_system_note_on_a_later_line_of_the_reply_is_a_system_note() -> None:
    # The 0.5B wrote a reply, then a separator and a copy of the corrective note below it.
    copied = "3月14日だよ。\n\n---\n\n[システム] さっきと同じ返事になっている。"
    assert detect_degenerate(_reply(copied), None, []) == "system_note"
    assert junk_kind(copied, [], []) == "system_note"
    # Brackets inside a line are words, not a note.
    assert detect_degenerate(_reply("ミケ（システムエンジニアの猫）だよ"), None, []) is None


def test_a_reply_that_is_only_a_role_word_is_a_system_note() -> None:
    for reply in ("system", "System.", "「システム」", "assistant", "ユーザー"):
        assert detect_degenerate(_reply(reply), None, []) == "system_note", reply
        assert junk_kind(reply, [], []) == "system_note", reply
    assert detect_degenerate(_reply("The system is down again, ugh."), None, []) is None



def test_pieces_of_the_call_json_in_a_reply_are_debris() -> None:
    assert detect_degenerate(_reply("... }}}. また、あなたは最新の会話を検索する"), "おはよう", []) == "call_debris"
    assert detect_degenerate(_reply("(看護師の仕事って何だったっけ？)}}'}'（深呼吸）"), "仕事は？", []) == "call_debris"
    assert junk_kind("... } このように", []) == "call_debris"
    assert detect_degenerate(_reply("{笑} それいいね"), "やあ", []) is None  # braces it opened itself


@pytest.mark.parametrize("message", ["'システム'の新しい返事を'", "'System'の答えは「その意味だけ」ですね。", "「System」"])
def test_a_quoted_role_word_opening_the_reply_is_a_system_note(message: str) -> None:
    # The 0.5B opened every reply of a 12-turn session this way once it had started.
    assert detect_degenerate(_reply(message), "週末は猫カフェに行こうと思ってるよ。", []) == "system_note"


def test_talking_about_a_system_is_not_a_system_note() -> None:
    assert detect_degenerate(_reply("「システム」って難しいよね。"), "仕事でシステムを作ってるんだ", []) is None


def test_saying_back_a_fact_from_an_earlier_user_line_is_not_junk() -> None:
    """Only the line a reply answers is compared piece by piece; an earlier one holds facts to recall."""
    lines = ["好きな食べ物はいちご大福！", "私の好きな食べ物、覚えてる？"]
    assert junk_kind("ゆいの好きな食べ物はいちご大福", [], lines) is None
    assert junk_kind("うん、私の好きな食べ物、覚えてる？", [], lines) == "parrots_user"


def test_another_script_mid_reply_and_command_debris_are_junk_and_natural_text_is_not() -> None:
    """Measured both ways: the replies served to SillyTavern that were junk, and every natural line
    we hold — the written long conversations and the replies both packaged models gave in the
    memory benchmark runs (none of them mixes scripts) — plus loanwords, emoji and formulas."""
    import json
    from pathlib import Path

    from memagent.junk import has_call_debris, loops, mixes_scripts, opens_like_a_command

    junk = ["ミケ的猫の名前입니다。", "/はい?", "\\n はい", "Привет! ミケだよ", "こんにちは、안녕하세요！"]
    assert all(mixes_scripts(text) or has_call_debris(text) for text in junk)
    runaway = "猫は、三毛猫なんだ。" + "猫が appearingSFなんだ。" * 12
    assert loops(normalise_text(runaway)) and junk_kind(runaway, []) == "looping"
    bench = Path(__file__).parents[1] / "bench"
    natural = ["OK！", "Tシャツ買ったよ", "LINEで送るね", "100,000,000 yen", "（思い出した）ミケだよね", "😊 いいね！",
               "Thank you!", "Nooooo!", "カフェでlatteを飲んだ", "3/4に行くよ", "ρの値は？", "x² + y² = 1 だね"]
    for name in ("longconv_en.jsonl", "longconv_ja.jsonl"):
        for line in (bench / "data" / name).read_text(encoding="utf-8").splitlines():
            natural += [message["content"] for message in json.loads(line)["messages"]]
    assert len(natural) > 1000  # the model replies, labelled, are in tests/data/junk_corpus.jsonl
    assert [text for text in natural if mixes_scripts(text) or opens_like_a_command(text)
            or loops(normalise_text(text))] == []


def test_natural_replies_the_policy_used_to_reject_are_shown() -> None:
    """Found rejected in real chats: a greeting or thanks said again later, a long number, an
    action in brackets, an in-character offer to help. A short reply is still a repeat within the
    last few replies, and a sentence anywhere in the recent ones."""
    from pathlib import Path

    prompts = Path(__file__).parents[1] / "prompts"
    cliches = [line for lang in ("ja", "en") for line in (prompts / lang / "cliches.txt").read_text(encoding="utf-8")
               .splitlines() if line.strip() and not line.startswith("#")]
    earlier = ["おはよう！", "Thank you!", *[f"something else entirely, number {i}" for i in range(20)]]
    for natural in ("おはよう！", "Thank you!", "Nooooo!", "100,000,000 yen", "（思い出した）ミケだよね", "お手伝いできるかな？"):
        assert detect_degenerate(_reply(natural), "hi", earlier, cliches) is None, natural
    assert detect_degenerate(_reply("おはよう！"), "hi", ["おはよう！", "x1", "x2"], cliches) == "repeated_reply"
    sentence = "今日は本屋さんで新しい文庫本を三冊も買ったんだよ"
    assert detect_degenerate(_reply(sentence), "hi", [sentence, *earlier], cliches) == "repeated_reply"


@pytest.mark.parametrize("language", ["ja", "en"])
def test_every_kind_of_junk_has_its_own_corrective_note(paths: Paths, language: str) -> None:
    library = PromptLibrary(paths, language)
    notes = [library.render("degenerate.j2", kind=kind) for kind in JUNK_KINDS]
    assert len(set(notes)) == len(JUNK_KINDS)


def test_a_reply_in_another_language_is_junk_and_a_word_of_it_is_not() -> None:
    def judged(reply: str, user: str, language: str) -> JunkKind | None:
        return judge(Reply(reply), ReplyContext(last_user=user, language=language))

    english = "AI has no answer for this question, and it seems to be a misunderstanding."
    assert judged(english, "今日は会議ばかりで忙しかった。", "ja") == "other_language"
    assert judged("そうなんだ、おつかれさま。今日はゆっくりしてね。", "I had meetings all day.", "en") == "other_language"
    for talk in ("Thank you!", "OK!", "Wow, nice!"):
        assert judged(talk, "プレゼント送ったよ", "ja") is None
    assert judged("Sure, let's talk in English then.", "Can we speak English?", "ja") is None  # the user chose it
    assert judged("LINEで送るね！", "写真ちょうだい", "ja") is None


def test_a_sentence_of_the_users_said_back_is_a_parrot_unless_it_answers_what_was_asked() -> None:
    earlier = ["娘が4月からひばり幼稚園に入ったの。", "ボルダリングにはまってる。"]
    recited = "はい、私の誕生日は3月14日です。娘が4月からひばり幼稚園に入ったの。"
    assert judge(Reply(recited), ReplyContext(last_user="私の誕生日覚えてる？", earlier_user_lines=earlier)) == "parrots_user"
    answer = "ボルダリングにはまってる！"
    asked = ReplyContext(last_user="私が最近はまってるもの、覚えてる？", earlier_user_lines=earlier, asked=("ボルダリング",))
    assert judge(Reply(answer), asked) is None
    confirmation = ReplyContext(last_user="先月、大阪に引っ越したんだ。")
    assert judge(Reply("大阪に引っ越したんだね！どう、慣れた？"), confirmation) is None
