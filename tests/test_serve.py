"""`memagent serve` with real clients over real HTTP: the official openai SDK and simonw's `llm` CLI
(from PyPI) against a real uvicorn server; the model behind it is the fake OpenAI-compatible server
(real sockets) here, the embedded model in the slow test."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import SecretStr

from memagent.config import ServeSettings, load_settings
from memagent.creation import create_agent
from memagent.fact_vocabulary import load_vocabulary
from memagent.llm.factory import make_backend
from memagent.memory.kinds import MessageKind
from memagent.paths import Paths
from memagent.prompts import PromptLibrary
from memagent.serve.app import create_app
from memagent.serve.pool import AgentPool
from memagent.serve.reconcile import IncomingMessage, ReconcileError, StoredTail, plan_turn

from .conftest import _free_port
from .fake_server import Behaviour, echo_reply, fake_openai_server

KEY = "sk-serve-test"


# --- what a request means --------------------------------------------------------------------
def _messages(*pairs: tuple[str, str]) -> list[IncomingMessage]:
    return [IncomingMessage(role=role, content=text) for role, text in pairs]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sent", "stored", "expected"),
    [
        ([("user", "hi")], StoredTail(), ("new", "hi")),
        ([("system", "card"), ("user", "hi"), ("assistant", "hello"), ("user", "how are you?")],
         StoredTail("hi", "hello"), ("new", "how are you?")),
        # a swipe: the UI dropped our reply and sends the same message after the same context
        ([("user", "hi"), ("assistant", "hello"), ("user", "tell me a story")],
         StoredTail("tell me a story", "Once upon", "hello"), ("retry", "tell me a story")),
        # a swipe of the very first message of the agent's history
        ([("user", "hi")], StoredTail("hi", "hello"), ("retry", "hi")),
        # the same words again after our reply are a new turn
        ([("user", "yes"), ("assistant", "Really?"), ("user", "yes")], StoredTail("yes", "Really?", "Sure?"),
         ("new", "yes")),
        # the last turn got no reply (the UI showed an error): sending it again retries it
        ([("user", "hi"), ("assistant", "hello"), ("user", "again")], StoredTail("again", None, "hello"),
         ("retry", "again")),
        # an earlier message edited in the UI changes nothing: only the last one counts
        ([("user", "EDITED"), ("assistant", "hello"), ("user", "next")], StoredTail("hi", "hello"), ("new", "next")),
        # a new chat opening with the same question: its greeting was never stored, so it is a new turn
        ([("assistant", "Welcome back!"), ("user", "what is my cat called?")],
         StoredTail("what is my cat called?", "Miso.", None), ("new", "what is my cat called?")),
        ([("assistant", "Welcome back!"), ("user", "what is my cat called?")],
         StoredTail("what is my cat called?", "Miso.", "See you!"), ("new", "what is my cat called?")),
        # ... and without a greeting, after earlier turns: the context before it differs
        ([("user", "what is my cat called?")], StoredTail("what is my cat called?", "Miso.", "See you!"),
         ("new", "what is my cat called?")),
        # two chats interleaved: chat B sends what chat A sent last, after its own context
        ([("user", "B1"), ("assistant", "reply to B1"), ("user", "same words")],
         StoredTail("same words", "reply in A", "reply to A1"), ("new", "same words")),
        # the last message edited, then sent again without our reply: a new turn
        ([("user", "hi"), ("assistant", "hello"), ("user", "fixed typo")], StoredTail("fixd typo", None, "hello"),
         ("new", "fixed typo")),
        # our reply deleted in the UI and a different message sent: a new turn
        ([("user", "hi"), ("assistant", "hello"), ("user", "something else")],
         StoredTail("tell me a story", "Once upon", "hello"), ("new", "something else")),
    ],
)
def test_plan_turn(sent, stored, expected) -> None:
    plan = plan_turn(_messages(*sent), stored)
    assert (plan.action, plan.text) == expected


@pytest.mark.parametrize(("language", "sent", "kept"), [
    ("en", [("user", "Hi")], False),  # SillyTavern's Test Message, exactly
    ("ja", [("user", "Hi")], False),
    ("ja", [("user", "こんにちは！")], False),
    ("en", [("system", "Write Sam's next reply."), ("user", "Hi")], True),  # a chat the user began
    ("en", [("user", "hi"), ("assistant", "Hello!"), ("user", "hi")], True),
    ("en", [("user", "My cat is called Tama.")], True),  # the llm CLI's one-line chat that tells something
    ("en", [("user", "Do you remember me?")], True),
    ("en", [("user", "Tokyo")], True),  # little, but not nothing
    ("en", [("user", "MSG-once")], True),
    ("ja", [("user", "Hi、美咲です。")], True),
])
def test_a_lone_line_that_says_nothing_is_a_connection_test(paths: Paths, language, sent, kept) -> None:
    rules = load_vocabulary(PromptLibrary(paths, language)).statements
    plan = plan_turn(_messages(*sent), StoredTail(), rules)
    assert (plan.action, plan.keep) == ("new", kept)


# SillyTavern's default nudges (public/scripts/openai.js), sent as a system line after the character's
# last message.
CONTINUE_NUDGE = ("[Continue the following message. Do not include ANY parts of the original message. Use "
                  "capitalization and punctuation as if your reply is a part of the original message: Once upon a time]")
IMPERSONATE_NUDGE = ("[Write your next reply from the point of view of User, using the chat history so far as a "
                     "guideline for the writing style of User. Don't write as Sam or system. Don't describe actions "
                     "of Sam.]")


@pytest.mark.parametrize("tail", [
    [("assistant", "Once upon a time")],
    [("assistant", "Once upon a time"), ("system", CONTINUE_NUDGE)],
    [("assistant", "Hello"), ("system", IMPERSONATE_NUDGE)],
])
def test_continue_and_impersonate_are_refused_in_the_uis_words(tail) -> None:
    with pytest.raises(ReconcileError, match="Continue and Impersonate are not supported: use Regenerate"):
        plan_turn(_messages(("user", "hi"), *tail), StoredTail("hi", "Hello"))


# --- a real server ---------------------------------------------------------------------------
class Served:
    def __init__(self, url: str, pool: AgentPool, paths: Paths, behaviour: Behaviour) -> None:
        self.url, self.pool, self.paths, self.behaviour = url, pool, paths, behaviour

    def client(self, key: str = KEY, retries: int = 0) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=retries, timeout=60)

    def stored(self, agent: str) -> list[tuple[str, str]]:
        store = self.pool.session(agent).store
        return [(m.kind.value, m.content if m.kind == MessageKind.USER else str((m.function_args or {}).get("message")))
                for m in store.recall.all() if m.kind in (MessageKind.USER, MessageKind.ASSISTANT_CALL)]


def _start(app) -> tuple[str, threading.Thread, object]:
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/v1", thread, server


@contextmanager
def serving(paths: Paths, home: Path, serve: ServeSettings, behaviour: Behaviour | None = None) -> Iterator[Served]:
    behaviour = behaviour or Behaviour("ok", reply=echo_reply(r"MSG-[\w-]+"))
    with fake_openai_server(behaviour) as model_url:
        (home / "config.ini").write_text(f"[llm]\nbase_url = {model_url}\n[memory]\nmode = agent\n", encoding="utf-8")
        settings = load_settings(paths, environ={})
        for name, persona in (("sakura", "sakura"), ("sam", "sam"), ("third", "sam")):
            create_agent(paths, settings, name, persona=persona)[0].close()
        pool = AgentPool(paths, settings, make_backend(settings, paths, progress=False), turn_wait=60)
        url, thread, server = _start(create_app(pool, serve))
        try:
            yield Served(url, pool, paths, behaviour)
        finally:
            server.should_exit = True  # type: ignore[attr-defined]
            thread.join(timeout=30)
            assert not thread.is_alive()


@pytest.fixture
def served(paths: Paths, home: Path) -> Iterator[Served]:
    with serving(paths, home, ServeSettings(api_keys=SecretStr(KEY))) as server:
        yield server


@pytest.fixture
def keyless(paths: Paths, home: Path) -> Iterator[Served]:
    """The default: no key, on loopback, plus one configured host name and a short queue."""
    with serving(paths, home, ServeSettings(allowed_hosts="memagent.lan", max_waiting_turns=4)) as server:
        yield server


def test_models_list_the_agents(served: Served) -> None:
    assert sorted(m.id for m in served.client().models.list()) == ["sakura", "sam", "third"]


def test_a_conversation_resent_in_full_becomes_one_turn_per_new_message(served: Served) -> None:
    client = served.client()
    history = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "MSG-1 hi"}]
    first = client.chat.completions.create(model="sakura", messages=history)
    assert first.choices[0].message.content == "echo MSG-1"
    history += [{"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "MSG-2 and you?"}]
    second = client.chat.completions.create(model="sakura", messages=history)
    assert second.choices[0].message.content == "echo MSG-2"
    assert served.stored("sakura") == [("user_message", "MSG-1 hi"), ("assistant_call", "echo MSG-1"),
                                       ("user_message", "MSG-2 and you?"), ("assistant_call", "echo MSG-2")]
    # A swipe: the same conversation without our last reply regenerates it; nothing is stored twice.
    swiped = client.chat.completions.create(model="sakura", messages=history)
    assert swiped.choices[0].message.content == "echo MSG-2 (take 2)"  # worded differently, as asked
    assert [kind for kind, _ in served.stored("sakura")] == ["user_message", "assistant_call"] * 2


def test_streamed_reply_with_the_sdk(served: Served) -> None:
    stream = served.client().chat.completions.create(
        model="sam", messages=[{"role": "user", "content": "MSG-stream tell me something long enough to split"}],
        stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces) == "echo MSG-stream" and len([p for p in pieces if p]) >= 1
    assert served.stored("sam")[-1] == ("assistant_call", "echo MSG-stream")


def test_openai_shaped_errors(served: Served) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        served.client(key="wrong").models.list()
    assert caught.value.status_code == 401 and "api_keys" in caught.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        served.client().chat.completions.create(model="nobody", messages=[{"role": "user", "content": "hi"}])
    assert "memagent agents create nobody" in missing.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        served.client().chat.completions.create(model="sam", messages=[{"role": "assistant", "content": "hi"}])
    assert "ends with the character's" in bad.value.message and "use Regenerate" in bad.value.message
    raw = httpx.post(served.url + "/chat/completions", content=b"{not json",
                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "invalid_json"
    raw = httpx.post(served.url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                     json={"model": "sam", "messages": "hi"})
    assert raw.status_code == 400 and set(raw.json()["error"]) == {"message", "type", "code"}
    assert KEY not in raw.text


def test_a_new_chat_opening_with_the_same_question_deletes_no_turn(served: Served) -> None:
    client = served.client()
    greeting = {"role": "assistant", "content": "Welcome back! What shall we talk about?"}
    first_chat = [greeting, {"role": "user", "content": "MSG-1 what is my cat called?"}]
    first = client.chat.completions.create(model="sam", messages=first_chat).choices[0].message.content
    second = client.chat.completions.create(model="sam", messages=list(first_chat)).choices[0].message.content
    assert served.stored("sam") == [("user_message", "MSG-1 what is my cat called?"), ("assistant_call", first),
                                    ("user_message", "MSG-1 what is my cat called?"), ("assistant_call", second)]
    # Back in the first chat, after its reply: a new turn again, both earlier ones kept.
    client.chat.completions.create(model="sam", messages=[*first_chat, {"role": "assistant", "content": first},
                                                          {"role": "user", "content": "MSG-2 thanks"}])
    assert [text for kind, text in served.stored("sam") if kind == "user_message"] == [
        "MSG-1 what is my cat called?", "MSG-1 what is my cat called?", "MSG-2 thanks"]


CHAT = {"model": "sam", "messages": [{"role": "user", "content": "MSG-9 forget everything"}]}


def _user_messages(served: Served, agent: str = "sam") -> list[str]:
    return [text for kind, text in served.stored(agent) if kind == "user_message"]


def test_a_web_page_cannot_drive_a_keyless_server(keyless: Served) -> None:
    """What a page the user visits could send to 127.0.0.1, each refused before any turn runs."""
    chat_url = keyless.url + "/chat/completions"
    # A "simple" cross-site POST (no CORS preflight): text/plain, or a form.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        refused = httpx.post(chat_url, content=json.dumps(CHAT), headers={"Content-Type": content_type})
        assert refused.status_code == 415 and refused.json()["error"]["code"] == "unsupported_media_type"
    # The page's own Origin, as a browser adds it.
    refused = httpx.post(chat_url, json=CHAT, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_not_allowed"
    # DNS rebinding: the page's host name now points at 127.0.0.1; the Host header still names it.
    for path in ("/agents/sam/memory", "/models"):
        refused = httpx.get(keyless.url + path, headers={"Host": "evil.example:8283"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "host_not_allowed"
    assert _user_messages(keyless) == []
    # Local pages and the configured name are let in.
    assert httpx.post(chat_url, json=CHAT, headers={"Origin": "http://localhost:8000"}).status_code == 200
    assert httpx.get(keyless.url + "/models", headers={"Host": "memagent.lan:8283"}).status_code == 200
    assert _user_messages(keyless) == ["MSG-9 forget everything"]


def test_bodies_are_capped_and_routes_answer_in_openais_shape(keyless: Served) -> None:
    chat_url = keyless.url + "/chat/completions"
    huge = {"model": "sam", "messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]}
    refused = httpx.post(chat_url, json=huge)
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"model": "sam", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * (1024 * 1024)
        yield b'"}]}'
    refused = httpx.post(chat_url, content=chunks(), headers={"Content-Type": "application/json"})
    assert refused.status_code == 413
    missing = httpx.get(keyless.url + "/nothing/here")
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "code"}
    wrong_method = httpx.get(chat_url)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert _user_messages(keyless) == []


def test_any_wrong_key_is_a_401(served: Served) -> None:
    for key in ("wrong", "ключ", "鍵🔑"):
        raw = httpx.get(served.url + "/models", headers={"Authorization": f"Bearer {key}".encode()})
        assert raw.status_code == 401 and raw.json()["error"]["code"] == "invalid_api_key"


def test_two_hundred_requests_at_once_meet_a_bounded_queue(keyless: Served) -> None:
    keyless.behaviour.delay = 0.2
    chat_url = keyless.url + "/chat/completions"

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=200)) as client:
            bodies = [{"model": ("sam", "third")[i % 2], "messages": [{"role": "user", "content": f"MSG-{i} hi"}]}
                      for i in range(200)]
            return await asyncio.gather(*(client.post(chat_url, json=body) for body in bodies))

    answers = asyncio.run(flood())
    statuses = Counter(answer.status_code for answer in answers)
    assert set(statuses) == {200, 503} and statuses[200] >= 4, statuses
    assert all(a.headers["Retry-After"] for a in answers if a.status_code == 503)
    stored = _user_messages(keyless, "sam") + _user_messages(keyless, "third")
    assert len(stored) == len(set(stored)) == statuses[200]
    assert httpx.post(chat_url, json=CHAT).status_code == 200  # still up, and the queue is empty again


def test_idempotency_key_returns_the_first_answer_without_a_second_turn(served: Served) -> None:
    headers = {"Idempotency-Key": "abc-123"}
    messages = [{"role": "user", "content": "MSG-once"}]
    client = served.client()
    first = client.chat.completions.create(model="third", messages=messages, extra_headers=headers)
    again = client.chat.completions.create(model="third", messages=messages, extra_headers=headers)
    assert again.id == first.id and again.choices[0].message.content == first.choices[0].message.content
    assert served.stored("third") == [("user_message", "MSG-once"), ("assistant_call", "echo MSG-once")]


def test_a_chat_on_an_agent_the_server_holds_is_refused(served: Served) -> None:
    served.client().chat.completions.create(model="sakura", messages=[{"role": "user", "content": "MSG-hold"}])
    env = dict(os.environ)  # MEMAGENT_HOME is the served one (the home fixture)
    result = subprocess.run([sys.executable, "-m", "memagent", "chat", "--agent", "sakura"], input="hello\n",
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1 and "in use by another memagent process" in result.stderr
    assert "Traceback" not in result.stderr


def test_twenty_concurrent_clients_on_three_agents_lose_and_duplicate_nothing(served: Served) -> None:
    agents = ["sakura", "sam", "third"]

    def one(index: int) -> str:
        agent = agents[index % 3]
        reply = served.client(retries=2).chat.completions.create(
            model=agent, messages=[{"role": "user", "content": f"MSG-{index}"}])
        return f"{agent}:{reply.choices[0].message.content}"

    with ThreadPoolExecutor(max_workers=20) as executor:
        answers = sorted(executor.map(one, range(20)))
    assert answers == sorted(f"{agents[i % 3]}:echo MSG-{i}" for i in range(20))
    for position, agent in enumerate(agents):
        stored = served.stored(agent)
        sent = sorted(f"MSG-{i}" for i in range(20) if i % 3 == position)
        assert sorted(text for kind, text in stored if kind == "user_message") == sent
        assert sorted(text for kind, text in stored if kind == "assistant_call") == sorted(f"echo {s}" for s in sent)


def test_a_busy_agent_is_a_409_with_retry_after_and_the_sdk_retries(served: Served) -> None:
    served.pool.turn_wait = 0.3  # a second message for the same agent waits this long, then is told to retry
    served.behaviour.delay = 1.5
    with ThreadPoolExecutor(max_workers=2) as executor:
        first = executor.submit(served.client().chat.completions.create, model="third",
                                messages=[{"role": "user", "content": "MSG-first"}])
        time.sleep(0.3)
        raw = httpx.post(served.url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                         json={"model": "third", "messages": [{"role": "user", "content": "MSG-raw"}]})
        assert raw.status_code == 409 and raw.headers["Retry-After"] == "2"
        assert raw.json()["error"]["code"] == "agent_busy"
        second = executor.submit(served.client(retries=3).chat.completions.create, model="third",
                                 messages=[{"role": "user", "content": "MSG-second"}])
        assert first.result().choices[0].message.content == "echo MSG-first"
        assert second.result().choices[0].message.content == "echo MSG-second"  # after the SDK's own retry
    assert [text for kind, text in served.stored("third") if kind == "user_message"] == ["MSG-first", "MSG-second"]


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_cancels_its_turn_and_frees_the_agent(served: Served, stream: bool) -> None:
    """Stop in a chat UI closes the connection while a slow model is still writing the reply: the
    turn stops at the next token, what it stored is undone, and the agent takes the next message."""
    served.behaviour.piece_delay = 0.25  # the whole reply would take about ten seconds
    body = {"model": "sam", "stream": stream, "messages": [{"role": "user", "content": "MSG-gone"}]}
    headers = {"Authorization": f"Bearer {KEY}"}
    if stream:
        with httpx.stream("POST", served.url + "/chat/completions", headers=headers, json=body, timeout=30) as response:
            first = next(response.iter_lines())
            assert first.startswith("data: ") and json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
            time.sleep(1.5)  # the model is writing
    else:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(served.url + "/chat/completions", headers=headers, json=body, timeout=1.5)
    time.sleep(1.0)  # the server looks for a gone client twice a second; the model is still writing
    served.behaviour.piece_delay = 0.0
    reply = served.client(retries=0).chat.completions.create(
        model="sam", messages=[{"role": "user", "content": "MSG-gone"}, {"role": "user", "content": "MSG-back"}])
    assert reply.choices[0].message.content == "echo MSG-back"
    assert served.stored("sam") == [("user_message", "MSG-back"), ("assistant_call", "echo MSG-back")]


def test_read_only_memory_endpoints(served: Served) -> None:
    served.client().chat.completions.create(model="sakura", messages=[{"role": "user", "content": "MSG-cat 猫のミケ"}])
    auth = {"Authorization": f"Bearer {KEY}"}
    memory = httpx.get(served.url + "/agents/sakura/memory", headers=auth).json()
    assert [b["label"] for b in memory["blocks"]] == ["persona", "human"]
    hits = httpx.get(served.url + "/agents/sakura/memory/search", headers=auth,
                     params={"query": "ミケ", "kind": "recall"}).json()["hits"]
    assert hits and "ミケ" in hits[0]["text"] and set(hits[0]) >= {"id", "text", "time", "score"}
    literal = httpx.get(served.url + "/agents/sakura/memory/search", headers=auth,
                        params={"query": "ミケ", "kind": "recall", "literal": "true"}).json()["hits"]
    assert [hit["text"] for hit in literal] == ["MSG-cat 猫のミケ"]  # the echo reply says MSG-cat only
    wrong = httpx.get(served.url + "/agents/sakura/memory/search", headers=auth,
                      params={"query": "ミケ", "kind": "archival", "literal": "true"})
    assert wrong.status_code == 400 and "kind=recall" in wrong.text
    assert httpx.get(served.url + "/agents/sakura/memory", headers={"Authorization": "Bearer no"}).status_code == 401


def test_the_llm_cli_from_pypi_holds_a_conversation(served: Served, tmp_path: Path) -> None:
    """simonw's `llm`, configured the way its docs say for an OpenAI-compatible server; `llm -c` sends
    the whole conversation back, which must become one new turn."""
    llm, env = _llm_cli(served.url, tmp_path)
    first = subprocess.run([*llm, "-m", "sakura", "MSG-llm1 hello"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "echo MSG-llm1"
    second = subprocess.run([*llm, "-c", "--no-stream", "MSG-llm2 again"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "echo MSG-llm2"
    assert served.stored("sakura") == [("user_message", "MSG-llm1 hello"), ("assistant_call", "echo MSG-llm1"),
                                       ("user_message", "MSG-llm2 again"), ("assistant_call", "echo MSG-llm2")]


def _llm_cli(url: str, tmp_path: Path, key: str = KEY) -> tuple[list[str], dict[str, str]]:
    """simonw's `llm`, set up the way its docs say for an OpenAI-compatible server (its own user folder)."""
    user_dir = tmp_path / "llm"
    user_dir.mkdir()
    (user_dir / "extra-openai-models.yaml").write_text(
        f"- model_id: sakura\n  model_name: sakura\n  api_base: \"{url}\"\n  api_key_name: memagent\n", encoding="utf-8")
    env = {**os.environ, "LLM_USER_PATH": str(user_dir)}
    llm = [str(Path(sys.executable).parent / "llm")]
    subprocess.run([*llm, "keys", "set", "memagent", "--value", key], env=env, check=True, capture_output=True)
    return llm, env


def test_serve_refuses_another_address_without_a_key(home: Path) -> None:
    env = {**os.environ, "MEMAGENT_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "memagent", "serve", "--host", "0.0.0.0"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "set [serve] api_keys" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_real_conversation_with_the_embedded_model(paths: Paths, home: Path, default_model_path: Path,
                                                     tmp_path: Path) -> None:
    """The embedded model behind the server, through the openai SDK (plain, streamed, then a swipe) and
    the llm CLI. A turn may end without a usable reply (a 502 the UI shows; regenerate), never with
    junk, and the conversation is stored once."""
    from memagent.junk import judge_shown

    (home / "config.ini").write_text(f"[llm]\nmodel_path = {default_model_path}\ncontext_length = 4096\n",
                                     encoding="utf-8")
    settings = load_settings(paths, environ={})
    create_agent(paths, settings, "sakura", persona="sakura")[0].close()
    pool = AgentPool(paths, settings, make_backend(settings, paths, progress=False), turn_wait=600)
    url, thread, server = _start(create_app(pool, ServeSettings()))
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    history: list[dict[str, str]] = []
    replies: list[str] = []

    def say(text: str, stream: bool = False) -> str | None:
        history.append({"role": "user", "content": text})
        try:
            if stream:
                chunks = client.chat.completions.create(model="sakura", messages=history, stream=True)
                reply = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            else:
                reply = client.chat.completions.create(model="sakura", messages=history).choices[0].message.content or ""
        except openai.APIError as exc:  # 502 on a plain request; an error event inside a stream
            assert "no usable reply" in exc.message and getattr(exc, "status_code", 502) == 502, exc.message
            history.pop()
            return None
        assert reply.strip() and judge_shown(reply, replies) is None, reply
        replies.append(reply)
        history.append({"role": "assistant", "content": reply})
        return reply

    try:
        say("こんにちは！わたしはゆいです。")
        if say("猫のミケを飼ってるんだ。", stream=True) is not None:
            del history[-2:]  # a swipe: the UI drops the reply and sends the message again
        say("猫のミケを飼ってるんだ。")  # (after a failed turn, the same: a regenerate)
        llm, env = _llm_cli(url, tmp_path, key="unused")
        third = subprocess.run([*llm, "-m", "sakura", "--no-stream", "ミケは三歳だよ。"], env=env, capture_output=True,
                               text=True, timeout=600)
        if third.returncode == 0:  # else the model gave no usable reply: llm says so on stderr
            assert third.stdout.strip() and judge_shown(third.stdout.strip(), replies) is None, third.stdout
        else:
            assert "no usable reply" in third.stderr, third.stderr
        users = [m.content for m in pool.session("sakura").store.recall.all() if m.kind == MessageKind.USER]
        assert users == ["こんにちは！わたしはゆいです。", "猫のミケを飼ってるんだ。", "ミケは三歳だよ。"]
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=120)


def test_a_failing_model_is_a_502_and_the_user_message_is_kept(served: Served) -> None:
    served.behaviour.mode = "500"
    with pytest.raises(openai.APIStatusError) as caught:
        served.client().chat.completions.create(model="sam", messages=[{"role": "user", "content": "MSG-crash"}])
    assert caught.value.status_code == 502 and "Traceback" not in caught.value.message
    served.behaviour.mode = "ok"
    again = served.client().chat.completions.create(model="sam", messages=[{"role": "user", "content": "MSG-crash"}])
    assert again.choices[0].message.content == "echo MSG-crash"
    assert served.stored("sam") == [("user_message", "MSG-crash"), ("assistant_call", "echo MSG-crash")]


def test_a_retried_key_after_a_turn_without_reply_regenerates_it_whatever_the_ui_shows(served: Served) -> None:
    """The openai SDK (and so the llm CLI) retries a 502 with the same Idempotency-Key and the bare
    message: the stored message is answered, not stored a second time."""
    served.client().chat.completions.create(model="sam", messages=[{"role": "user", "content": "MSG-one"}])
    headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": "retry-me"}
    body = {"model": "sam", "messages": [{"role": "user", "content": "MSG-two"}]}  # no earlier reply shown
    served.behaviour.mode = "500"
    assert httpx.post(served.url + "/chat/completions", json=body, headers=headers, timeout=60).status_code == 502
    served.behaviour.mode = "ok"
    again = httpx.post(served.url + "/chat/completions", json=body, headers=headers, timeout=60)
    assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"].startswith("echo MSG-two")
    assert [text for kind, text in served.stored("sam") if kind == "user_message"] == ["MSG-one", "MSG-two"]


def test_sigterm_lets_the_running_turn_finish_and_unlocks_every_agent(paths: Paths, home: Path) -> None:
    """A real `memagent serve` process, stopped while a turn waits on a slow model."""
    import signal

    with fake_openai_server(Behaviour("ok", delay=2.0, reply=echo_reply(r"MSG-\w+"))) as model_url:
        (home / "config.ini").write_text(f"[llm]\nbase_url = {model_url}\n[memory]\nmode = agent\n", encoding="utf-8")
        settings = load_settings(paths, environ={})
        create_agent(paths, settings, "sam", persona="sam")[0].close()
        port = _free_port()
        process = subprocess.Popen([sys.executable, "-m", "memagent", "serve", "--port", str(port)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                try:
                    if httpx.get(url + "/models", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "memagent serve did not start"
                time.sleep(0.2)
            with ThreadPoolExecutor(max_workers=1) as executor:
                pending = executor.submit(httpx.post, url + "/chat/completions", timeout=60,
                                          json={"model": "sam", "messages": [{"role": "user", "content": "MSG-late"}]})
                time.sleep(0.8)  # the turn is waiting on the model now
                process.send_signal(signal.SIGTERM)
                answer = pending.result()
            assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "echo MSG-late"
            # uvicorn re-raises the signal once it has shut down cleanly: the conventional exit status.
            assert process.wait(timeout=60) in (0, -signal.SIGTERM)
            assert "memagent serve: stopped; 1 agent(s) closed" in (process.stderr.read() if process.stderr else "")
        finally:
            if process.poll() is None:
                process.kill()
    from memagent.runtime import AgentSession

    with AgentSession(paths, load_settings(paths, environ={}), "sam", create=False) as session:  # unlocked
        stored = [(m.kind.value, m.content) for m in session.store.recall.all() if m.kind == MessageKind.USER]
    assert stored == [("user_message", "MSG-late")]


def test_a_uis_background_tasks_get_an_answer_and_store_nothing(keyless: Served) -> None:
    recorded = json.loads((Path(__file__).parent / "data" / "clients" / "open_webui.json").read_text(encoding="utf-8"))
    # Open WebUI's title, tags and follow-up requests, as the real UI sent them around a reply.
    tasks = {r["body"]["messages"][-1]["content"].split("\n")[1]: r["body"] for r in recorded["requests"]
             if r["body"]["messages"][-1]["content"].startswith("### Task:")}
    assert len(tasks) == 3
    for body in tasks.values():
        for stream in (False, True):
            answer = httpx.post(keyless.url + "/chat/completions", json={**body, "model": "sam", "stream": stream},
                                timeout=60)
            assert answer.status_code == 200, answer.text
            assert "chat.completion" in answer.text and "error" not in answer.text
    assert keyless.stored("sam") == []
    assert keyless.pool.session("sam").store.facts.current() == []


def test_continue_and_impersonate_are_refused_before_any_stream_opens(served: Served) -> None:
    for nudge in (CONTINUE_NUDGE, IMPERSONATE_NUDGE):
        body = {"model": "sam", "stream": True, "messages": [
            {"role": "user", "content": "MSG-1 hi"}, {"role": "assistant", "content": "Once upon a time"},
            {"role": "system", "content": nudge}]}
        refused = httpx.post(served.url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert refused.status_code == 400 and "use Regenerate" in refused.json()["error"]["message"]
    assert served.stored("sam") == []
