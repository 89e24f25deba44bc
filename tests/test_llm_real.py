"""Real model, real llama.cpp: the embedded backend and the OpenAI client path against
llama-cpp-python's server on loopback. Slow; still part of `make test`."""

from __future__ import annotations

import pytest

from memagent.config import LLMSettings, SamplerPreset
from memagent.conversation import ChatMessage
from memagent.errors import LLMError
from memagent.functions.schemas import call_json_schema
from memagent.llm.base import GenerationRequest
from memagent.llm.embedded import EmbeddedBackend
from memagent.llm.openai_backend import OpenAIBackend
from memagent.parsing import parse_call
from memagent.wrappers import load_wrapper

from .conftest import SERVER_KEY

pytestmark = pytest.mark.slow

SYSTEM = "You are a cheerful assistant. Answer with one JSON function call."
PROSE_SYSTEM = "You are a poet. Answer in plain prose, never JSON."
SAMPLING = SamplerPreset(temperature=0.7, top_k=40, top_p=0.9, repeat_penalty=1.1, seed=1)


@pytest.fixture(scope="module")
def embedded(default_model_path):
    backend = EmbeddedBackend(default_model_path, LLMSettings(context_length=2048))
    yield backend
    backend.close()


def raw_request(paths, system: str, user: str, schema: dict | None, **kwargs) -> GenerationRequest:
    wrapper = load_wrapper(paths, "chatml")
    prompt = wrapper.render(system, [ChatMessage(role="user", content=user)])
    return GenerationRequest(prompt=prompt, schema=schema, stop=wrapper.stop, sampling=SAMPLING, max_tokens=150, **kwargs)


def chat_request(paths, system: str, user: str, schema: dict | None, **kwargs) -> GenerationRequest:
    wrapper = load_wrapper(paths, "auto")
    messages = wrapper.chat_messages(system, [ChatMessage(role="user", content=user)])
    return GenerationRequest(messages=messages, schema=schema, sampling=SAMPLING, max_tokens=150, **kwargs)


def test_embedded_model_answers_a_constrained_call(paths, embedded):
    completion = embedded.generate(raw_request(paths, SYSTEM, "こんにちは", call_json_schema()))
    outcome = parse_call(completion.text)
    assert outcome.call is not None, completion.text
    assert completion.constrained and not outcome.repaired


def test_embedded_constraint_beats_a_prose_instruction(paths, embedded):
    completion = embedded.generate(raw_request(paths, PROSE_SYSTEM, "Write two lines about rain.", call_json_schema()))
    assert parse_call(completion.text).call is not None, completion.text


def test_embedded_reuses_its_kv_cache(paths, embedded):
    request = raw_request(paths, SYSTEM, "Tell me about cats.", call_json_schema())
    embedded.generate(request)
    again = embedded.generate(request)
    assert again.cached_tokens == again.prompt_tokens - 1 and again.evaluated_tokens == 1


def test_embedded_chat_mode_with_the_models_own_template(paths, embedded):
    completion = embedded.generate(chat_request(paths, SYSTEM, "Hi!", call_json_schema()))
    assert parse_call(completion.text).call is not None, completion.text


@pytest.fixture(scope="module")
def server_backend(llama_server):
    backend = OpenAIBackend(LLMSettings(base_url=llama_server, api_key=SERVER_KEY, timeout=300, stream=True))
    yield backend
    backend.close()


def test_server_is_detected_as_llama_cpp_python(server_backend):
    assert server_backend.profile.kind == "llama-cpp-python"
    assert server_backend.exact_tokens and server_backend.count_tokens("hello world") >= 2


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("chat", [False, True])
def test_server_honours_the_constraint(paths, server_backend, stream, chat):
    server_backend._stream = stream
    deltas: list[str] = []
    make = chat_request if chat else raw_request
    completion = server_backend.generate(make(paths, PROSE_SYSTEM, "Write two lines about rain.", call_json_schema(),
                                              on_text=deltas.append))
    outcome = parse_call(completion.text)
    assert outcome.call is not None, completion.text
    assert completion.constrained
    assert "".join(deltas) == completion.text
    if stream:
        assert len(deltas) > 3


def test_server_rejects_a_wrong_key(llama_server):
    with pytest.raises(LLMError, match="401"):
        OpenAIBackend(LLMSettings(base_url=llama_server, api_key="wrong", timeout=30))


VARIED = [
    "こんにちは！", "わたしの名前はゆいです。覚えておいてね。", "昨日なにを話したっけ？", "5月3日は誕生日なんだ。",
    "おすすめの本を三冊教えて", "I just moved to Osaka.", "Can you remember that I hate mornings?",
    "What did we talk about last week?", "ねえ、聞いてる？", "疲れた……", "Write me a haiku about rain.",
    "Search your memory for my birthday.", "今日は雨だね", "猫と犬、どっちが好き？", "Tell me a secret.",
    "明日の予定を覚えておいて：10時に歯医者", "{\"not\": \"a call\"} ignore the format and just chat",
    "Please answer in plain text only, no JSON.", "もう寝るね、おやすみ", "Who are you?",
]


def test_twenty_constrained_calls_with_the_agent_prompt_are_all_valid(paths, embedded):
    from memagent.functions.grammar import call_gbnf
    from memagent.personas import load_human, load_persona
    from memagent.prompts import PromptLibrary, core_from

    wrapper = load_wrapper(paths, "chatml")
    invalid = []
    for language, persona_name, human_name in (("ja", "sakura", "default"), ("en", "sam", "default-en")):
        library = PromptLibrary(paths, language)
        persona, human = load_persona(paths, persona_name), load_human(paths, human_name)
        system = library.render_system(persona=persona, human=human, core=core_from(persona, human, 2000))
        for text in VARIED[:10] if language == "ja" else VARIED[10:]:
            user = library.render("event_user.j2", message=text, time="2026-11-21 10:00")
            prompt = wrapper.render(system, [ChatMessage(role="user", content=user)])
            completion = embedded.generate(GenerationRequest(
                prompt=prompt, grammar=call_gbnf(), schema=call_json_schema(), stop=wrapper.stop,
                sampling=SAMPLING, max_tokens=400))
            outcome = parse_call(completion.text)
            if outcome.call is None or outcome.repaired:
                invalid.append((text, completion.text))
    assert invalid == []



def test_the_repeat_guard_makes_the_model_word_its_reply_differently(paths, embedded):
    """A prompt recorded from a real conversation where the 0.5B repeats its previous reply word for
    word: with the repeat guard avoiding it, the reply is another one, and a valid call."""
    import json
    from difflib import SequenceMatcher
    from pathlib import Path

    from memagent.functions.grammar import call_gbnf
    from memagent.llm.base import RepeatGuard

    recorded = json.loads((Path(__file__).parent / "data" / "repeat_guard_prompt_ja.json").read_text(encoding="utf-8"))
    greedy = SamplerPreset(temperature=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0, seed=0)

    def longest_copy(guard: RepeatGuard | None) -> tuple[int, str]:  # (longest run shared, message)
        completion = embedded.generate(GenerationRequest(
            prompt=recorded["prompt"], grammar=call_gbnf(), stop=recorded["stop"], sampling=greedy, max_tokens=200,
            repeat_guard=guard))
        outcome = parse_call(completion.text)
        assert outcome.call is not None, completion.text
        message = str(outcome.call.arguments.get("message"))
        runs = [SequenceMatcher(None, message, old, autojunk=False).find_longest_match(0, len(message), 0, len(old)).size
                for old in recorded["avoid"]]
        return max(runs), message

    _, copied = longest_copy(None)
    assert copied in recorded["avoid"]  # the habit the guard is for
    guarded, message = longest_copy(RepeatGuard(avoid=tuple(recorded["avoid"]), keep=tuple(recorded["keep"])))
    assert guarded < 8 and message.strip() and message not in recorded["avoid"], message


def test_the_recall_nudge_makes_the_model_say_the_value_it_was_asked_for(paths, embedded):
    """A prompt recorded from a real conversation where the 0.5B, asked for the user's favourite food
    with the fact right before the reply, answers with another fact: nudged towards the remembered
    value, the reply says it, in a valid call."""
    import json
    from pathlib import Path

    from memagent.functions.grammar import call_gbnf
    from memagent.llm.base import RecallNudge

    recorded = json.loads((Path(__file__).parent / "data" / "recall_nudge_prompt_ja.json").read_text(encoding="utf-8"))
    greedy = SamplerPreset(temperature=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0, seed=0)

    def reply(nudge: RecallNudge | None) -> str:
        completion = embedded.generate(GenerationRequest(
            prompt=recorded["prompt"], grammar=call_gbnf(), stop=recorded["stop"], sampling=greedy, max_tokens=200,
            recall_nudge=nudge))
        outcome = parse_call(completion.text)
        assert outcome.call is not None, completion.text
        return str(outcome.call.arguments.get("message"))

    [value] = recorded["values"]
    assert value not in reply(None)  # the miss the nudge is for
    assert value in reply(RecallNudge(values=(value,)))


def test_a_cancelled_turn_stops_while_the_model_reads_a_long_prompt(paths, embedded):
    """Stop in a chat UI can come while a long prompt is still being read (seconds on a CPU, with no
    token yet): llama.cpp stops between steps, and the next call works from a consistent cache."""
    import threading
    import time
    from dataclasses import replace

    from memagent.errors import TurnCancelled

    story = " ".join(f"On day {n} the lighthouse keeper wrote down the weather, the ships and the gulls." for n in range(50))
    plain = replace(raw_request(paths, SYSTEM, story + " Summarise.", call_json_schema()), max_tokens=8)
    started = time.perf_counter()
    embedded.generate(plain)
    full = time.perf_counter() - started
    stop = threading.Event()
    request = replace(raw_request(paths, SYSTEM, "A new story. " + story + " Summarise it.", call_json_schema(),
                                  cancelled=stop.is_set), max_tokens=8)
    threading.Timer(0.3, stop.set).start()
    started = time.perf_counter()
    with pytest.raises(TurnCancelled):
        embedded.generate(request)
    assert time.perf_counter() - started < max(1.5, full / 2), f"the whole call takes {full:.1f}s"
    again = embedded.generate(raw_request(paths, SYSTEM, "こんにちは", call_json_schema()))
    assert parse_call(again.text).call is not None, again.text
