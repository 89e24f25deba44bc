"""Several `memagent serve` workers on one PostgreSQL database (real processes, a real server, a fake
model): one turn per agent at a time across workers, nothing lost or stored twice, and a worker
killed mid-turn whose request is retried on another worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from memagent.config import StorageSettings, load_settings
from memagent.creation import create_agent
from memagent.memory import AgentStore
from memagent.memory.kinds import MessageKind
from memagent.paths import Paths

from .fake_server import Behaviour, echo_reply, fake_openai_server
from .memory_support import free_port

pytestmark = pytest.mark.slow


@dataclass
class Worker:
    process: subprocess.Popen[str]
    url: str

    def kill9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _start(env: dict[str, str]) -> Worker:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "memagent", "serve", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                return Worker(process, url)
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "memagent serve did not start"
        time.sleep(0.2)


@contextmanager
def workers(paths: Paths, home: Path, postgres_url: str, agents: list[str], delay: float, count: int = 2
            ) -> Iterator[list[Worker]]:
    with fake_openai_server(Behaviour("ok", delay=delay, reply=echo_reply(r"MSG-[\w-]+"))) as model_url:
        (home / "config.ini").write_text(f"[llm]\nbase_url = {model_url}\n[memory]\nmode = agent\n"
                                         f"[storage]\nurl = {postgres_url}\n", encoding="utf-8")
        settings = load_settings(paths, environ={})
        for name in agents:
            create_agent(paths, settings, name, persona="sam")[0].close()
        started = [_start(dict(os.environ)) for _ in range(count)]
        try:
            yield started
        finally:
            for worker in started:
                if worker.process.poll() is None:
                    worker.process.kill()
                    worker.process.wait()


def _said(paths: Paths, postgres_url: str, name: str) -> tuple[list[str], list[str]]:
    """The agent's stored user messages and replies, in order."""
    settings = load_settings(paths, environ={}).model_copy(update={"storage": StorageSettings(url=SecretStr(postgres_url))})
    with AgentStore.open(paths, settings, name) as store:
        messages = store.recall.all()
    return ([m.content for m in messages if m.kind == MessageKind.USER],
            [m.reply for m in messages if m.reply is not None])


def _ask(url: str, agent: str, history: list[dict[str, str]], key: str) -> str:
    while True:  # as a client should: a full queue (503) is asked again after its Retry-After
        answer = httpx.post(url + "/chat/completions", timeout=120, headers={"Idempotency-Key": key},
                            json={"model": agent, "messages": history})
        if answer.status_code != 503:
            break
        time.sleep(float(answer.headers["Retry-After"]))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["choices"][0]["message"]["content"])


def test_two_workers_share_the_agents_one_turn_at_a_time(paths: Paths, home: Path, postgres_url: str) -> None:
    agents = ["a1", "a2", "a3"]
    with workers(paths, home, postgres_url, agents, delay=0.05) as (first, second):
        def conversation(client: int) -> list[str]:
            agent, history, sent = agents[client % len(agents)], [], []
            for n in range(4):
                text = f"MSG-c{client}-{n}"
                history.append({"role": "user", "content": text})
                url = (first if (client + n) % 2 else second).url  # each message to either worker
                reply = _ask(url, agent, history, key=text)
                assert reply == f"echo {text}"  # its own turn's reply, not another client's
                history.append({"role": "assistant", "content": reply})
                sent.append(text)
            return sent

        with ThreadPoolExecutor(max_workers=9) as pool:
            sent = [text for texts in pool.map(conversation, range(9)) for text in texts]
    for agent in agents:
        users, replies = _said(paths, postgres_url, agent)
        assert len(users) == len(set(users)) == 12  # nothing twice, nothing lost
        assert sorted(replies) == sorted(f"echo {text}" for text in users)
    assert len(sent) == 36


def test_a_request_retried_on_another_worker_after_a_kill_9_mid_turn_is_stored_once(
        paths: Paths, home: Path, postgres_url: str) -> None:
    with workers(paths, home, postgres_url, ["sam"], delay=3.0) as (doomed, survivor):
        history = [{"role": "user", "content": "MSG-first"}]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(httpx.post, doomed.url + "/chat/completions", timeout=60,
                                  headers={"Idempotency-Key": "k-1"}, json={"model": "sam", "messages": history})
            time.sleep(1.5)  # its user message is stored; the model has not answered
            doomed.kill9()
            with pytest.raises(httpx.HTTPError):
                pending.result()
        users, _ = _said(paths, postgres_url, "sam")
        assert users == ["MSG-first"]  # what the killed worker had stored

        first = httpx.post(survivor.url + "/chat/completions", timeout=60, headers={"Idempotency-Key": "k-1"},
                           json={"model": "sam", "messages": history})
        # the killed worker's turn, finished: its stored message is answered (as a regenerate would)
        reply = first.json()["choices"][0]["message"]["content"]
        assert first.status_code == 200 and reply.startswith("echo MSG-first")
        again = httpx.post(survivor.url + "/chat/completions", timeout=60, headers={"Idempotency-Key": "k-1"},
                           json={"model": "sam", "messages": history})
        assert again.json()["id"] == first.json()["id"]  # the first answer, no second turn
        assert _said(paths, postgres_url, "sam") == (["MSG-first"], [reply])

        restarted = _start(dict(os.environ))  # a new worker answers the same key from the database
        try:
            third = httpx.post(restarted.url + "/chat/completions", timeout=60, headers={"Idempotency-Key": "k-1"},
                               json={"model": "sam", "messages": history})
            assert third.json()["id"] == first.json()["id"]
        finally:
            restarted.process.kill()
            restarted.process.wait()
    assert _said(paths, postgres_url, "sam") == (["MSG-first"], [reply])
