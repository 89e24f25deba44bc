"""`memagent chat` as scripts use it: piped stdin, one reply per line, --json events; over a real
HTTP server on loopback (the fake OpenAI-shaped server; the real llama.cpp server is in test_llm_real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .fake_server import Behaviour, fake_openai_server


def run_chat(home, stdin: bytes, *args: str, env_extra: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMAGENT_")}
    env |= {"MEMAGENT_HOME": str(home)} | (env_extra or {})
    return subprocess.run([sys.executable, "-m", "memagent", "chat", *args], input=stdin, capture_output=True,
                          env=env, timeout=timeout)


@pytest.fixture
def server_url():
    with fake_openai_server(Behaviour("ok")) as url:
        yield url


def test_piped_chat_prints_greeting_and_one_line_per_reply(home, server_url):
    result = run_chat(home, "こんにちは\n\n元気？\n".encode(), "--agent", "piped", env_extra={"MEMAGENT_BASE_URL": server_url})
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 3  # the persona's greeting + one reply per non-empty input line
    assert lines[1] == "hello"
    assert b"Traceback" not in result.stderr


def test_json_mode_prints_one_object_per_event(home, server_url):
    result = run_chat(home, b"hi\n", "--agent", "j", "--json", env_extra={"MEMAGENT_BASE_URL": server_url})
    assert result.returncode == 0, result.stderr.decode()
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert {e["type"] for e in events} >= {"assistant_message", "inner_thoughts"}
    assert all("text" in e for e in events)


def test_agent_is_created_and_remembered(home, server_url):
    run_chat(home, b"first\n", "--agent", "keep", env_extra={"MEMAGENT_BASE_URL": server_url})
    result = subprocess.run([sys.executable, "-m", "memagent", "memory", "search", "--agent", "keep", "--recall", "--literal",
                             "first", "--json"],
                            capture_output=True, env={**os.environ, "MEMAGENT_HOME": str(home)}, timeout=120)
    hits = json.loads(result.stdout)
    assert [h["text"] for h in hits] == ["first"]


def test_binary_garbage_on_stdin_is_not_fatal(home, server_url):
    garbage = bytes(range(256)) + b"\n\xff\xfe\x00hello\n"
    result = run_chat(home, garbage, "--agent", "bin", env_extra={"MEMAGENT_BASE_URL": server_url})
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_server_down_is_one_line_and_the_message_is_kept(home):
    result = run_chat(home, b"are you there?\n", "--agent", "down", env_extra={"MEMAGENT_BASE_URL": "http://127.0.0.1:9/v1"})
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "cannot connect" in err and "Traceback" not in err
    assert len([l for l in err.splitlines() if l.strip()]) == 1


def test_bad_config_is_one_line(home):
    (home / "config.ini").write_text("[llm]\ntimeout = never\n", encoding="utf-8")
    result = run_chat(home, b"hi\n", "--agent", "cfg")
    assert result.returncode == 2
    assert result.stderr.decode().strip().count("\n") == 0
    assert "llm.timeout" in result.stderr.decode()


def test_json_mode_reports_captured_and_recalled_memories_with_their_source(home):
    facts = json.dumps({"facts": [{"kind": "pet_name", "value": "ミケ"}]}, ensure_ascii=False)
    with fake_openai_server(Behaviour("ok", facts=facts)) as url:
        stdin = "うちの猫の名前はミケだよ\n猫の名前、覚えてる？\n".encode()
        result = run_chat(home, stdin, "--agent", "mem", "--json", env_extra={"MEMAGENT_BASE_URL": url})
    assert result.returncode == 0, result.stderr.decode()
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    captured = [e for e in events if e["type"] == "captured"]
    recalled = [e for e in events if e["type"] == "recalled"]
    assert [f["line"] for e in captured for f in e["facts"]] == ["ペットの名前: ミケ"]
    assert [m["text"] for e in recalled for m in e["memories"]] == ["ペットの名前: ミケ"]
    shown = subprocess.run([sys.executable, "-m", "memagent", "memory", "show", "--agent", "mem", "--json"],
                           capture_output=True, env={**os.environ, "MEMAGENT_HOME": str(home)}, timeout=120)
    [fact] = json.loads(shown.stdout)["facts"]
    assert fact["source"]["text"] == "うちの猫の名前はミケだよ"
