"""`memagent doctor`: one verdict per line, each failure with its fix, secrets hidden."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import SERVER_KEY
from .fake_server import Behaviour, fake_openai_server


def doctor(home, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMAGENT_")} | {"MEMAGENT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "memagent", "doctor", *args], capture_output=True, text=True,
                          env=env | (env_extra or {}), timeout=300)


def verdicts(result: subprocess.CompletedProcess) -> dict[str, str]:
    lines = [line.split(maxsplit=2) for line in result.stdout.splitlines() if line.strip()]
    return {parts[1]: parts[0] for parts in lines}


def test_embedded_defaults_without_any_config(home, default_model_path):
    (home / "cache").mkdir()
    os.symlink(default_model_path.parent, home / "cache" / "models")
    result = doctor(home, "--no-call")
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result) == {"config": "ok", "data": "ok", "storage": "ok", "model": "ok", "wrapper": "ok", "embedding": "ok",
                                "memory": "ok"}
    assert "defaults" in result.stdout
    assert "engine built for this CPU" in result.stdout


def test_server_reachable_and_a_call_made(home):
    with fake_openai_server(Behaviour("ok", models=[{"id": "m1", "owned_by": "vllm", "max_model_len": 8192}])) as url:
        (home / "config.ini").write_text(f"[llm]\nbase_url = {url}\napi_key = sk-doctor-SECRET\n", encoding="utf-8")
        result = doctor(home)
    assert result.returncode == 0, result.stdout + result.stderr
    found = verdicts(result)
    assert found["server"] == "ok" and found["models"] == "ok" and found["context"] == "ok" and found["call"] == "ok"
    assert "vllm" in result.stdout and "8192" in result.stdout and "valid send_message" in result.stdout
    assert "sk-doctor-SECRET" not in result.stdout + result.stderr
    assert "set (hidden)" in result.stdout


def test_server_down_fails_with_the_fix(home):
    result = doctor(home, env_extra={"MEMAGENT_BASE_URL": "http://127.0.0.1:9/v1"})
    assert result.returncode == 1
    line = next(l for l in result.stdout.splitlines() if l.split()[1:2] == ["server"])
    assert "FAIL" in line and "base_url" in line
    assert "Traceback" not in result.stderr


def test_bad_config_is_reported_as_the_first_verdict(home):
    (home / "config.ini").write_text("[llm]\nretries = many\n", encoding="utf-8")
    result = doctor(home)
    assert result.returncode == 2  # README: "2 a configuration error", as every other command
    assert result.stdout.splitlines()[0].split()[:2] == ["FAIL", "config"]
    assert "llm.retries" in result.stdout


@pytest.mark.slow
def test_real_server_constrained_call(home, llama_server):
    (home / "config.ini").write_text(f"[llm]\nbase_url = {llama_server}\napi_key = {SERVER_KEY}\ntimeout = 300\n", encoding="utf-8")
    result = doctor(home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "llama-cpp-python" in result.stdout and "(constrained)" in result.stdout
    assert SERVER_KEY not in result.stdout + result.stderr


def test_a_model_id_the_server_does_not_list_is_flagged(home):
    with fake_openai_server(Behaviour("ok", models=[{"id": "qwen2.5-7b", "owned_by": "llamacpp"}])) as url:
        (home / "config.ini").write_text(f"[llm]\nbase_url = {url}\nmodel = qwen-7b\n", encoding="utf-8")
        result = doctor(home, "--no-call")
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.split()[1:2] == ["model"])
    assert line.split()[0] == "warn" and "'qwen-7b' is not one the server lists" in line and "qwen2.5-7b" in line


def test_a_broken_facts_file_is_a_failed_memory_line_that_names_it(home):
    """A user's facts.toml that does not parse is found by `doctor`, not by a warning mid-chat."""
    with fake_openai_server(Behaviour("ok", models=[{"id": "m1"}])) as url:
        (home / "config.ini").write_text(f"[llm]\nbase_url = {url}\n", encoding="utf-8")
        result = doctor(home, "--no-call")
        assert verdicts(result)["memory"] == "ok" and "fact kinds from" in result.stdout
        facts = home / "prompts" / "ja" / "facts.toml"
        facts.parent.mkdir(parents=True)
        facts.write_text('[[kind]]\nkey = "pet"\nlabel = "ペット"\ncues = ["猫"]\nframes = ["猫の名前は"]\n', encoding="utf-8")
        result = doctor(home, "--no-call")
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if line.split()[1:2] == ["memory"])
    assert line.split()[0] == "FAIL" and str(facts) in line and "{value}" in line
    assert "Traceback" not in result.stderr
