"""Extension by registration: an agent function from a test-only module, and a real plugin package
installed into the test environment (an agent function with its own templates, and a CLI command)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest

import memagent
from memagent import plugins
from memagent.events import AgentEvent
from memagent.functions import call_gbnf, call_json_schema, function_names
from memagent.parsing import parse_call

from . import mood_plugin
from .fake_llm import call, say
from .fake_server import Behaviour, fake_openai_server

PLUGIN_SOURCE = Path(__file__).parent / "plugins" / "memagent-dice"


def _events() -> tuple[list[AgentEvent], Callable[[AgentEvent], None]]:
    seen: list[AgentEvent] = []
    return seen, seen.append


@pytest.fixture
def mood() -> Iterator[None]:
    plugins.register_plugin(mood_plugin, name="mood")
    yield
    plugins.unregister_plugin(mood_plugin)


def test_a_function_from_one_module_is_offered_parsed_called_and_undone(mood, scripted_agent):
    assert function_names()[-2:] == ["set_mood", "check_weather"]  # built-ins first, then plugins
    assert '"\\"set_mood\\""' in call_gbnf()
    assert any(v["properties"]["function"]["const"] == "set_mood" for v in call_json_schema()["anyOf"])
    # The parser knows its alias, from the same definition.
    outcome = parse_call('{"function": "set_mood", "params": {"feeling": "sulky"}}')
    assert outcome.call is not None and outcome.call.arguments["mood"] == "sulky"

    agent, llm = scripted_agent([
        call("set_mood", "she teased me", mood="sulky", request_heartbeat=True),
        say("Hmph. Fine."),
    ])
    seen, emit = _events()
    stats = agent.send("You're cute when you're angry", emit)
    assert stats.replied and stats.steps == 2
    assert agent.store.get_state("mood") == "sulky"
    assert "- set_mood(mood, request_heartbeat)" in llm.requests[0].prompt  # documented by _default.j2
    assert "mood is now sulky" in llm.requests[1].prompt  # its result reached the model
    assert [e.data["function"] for e in seen if e.type == "function_result"] == ["set_mood"]
    agent.undo()
    assert agent.store.get_state("mood") is None  # its own undo ran


def test_memory_off_offers_only_functions_that_need_no_memory(mood, scripted_agent):
    agent, _ = scripted_agent([], memory={"mode": "off"})
    assert agent.functions == ["send_message", "check_weather"]  # set_mood keeps needs_memory=True


def test_a_failing_function_does_not_end_the_chat(mood, scripted_agent):
    agent, llm = scripted_agent([call("check_weather", "look it up", city="Osaka", request_heartbeat=True),
                                 say("I couldn't check the weather, sorry!")])
    seen, emit = _events()
    stats = agent.send("Is it raining in Osaka?", emit)
    assert stats.replied and not stats.failed
    assert "check_weather failed (ConnectionError: weather service unreachable)" in llm.requests[1].prompt
    assert [e.data["ok"] for e in seen if e.type == "function_result"] == [False]


@pytest.fixture(scope="module")
def dice_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-installs tests/plugins/memagent-dice into a folder of its own (the venv stays as it was) and
    puts it on sys.path; plugins are discovered again from the installed entry points."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = build / "memagent-dice"
    subprocess.run(["cp", "-r", str(PLUGIN_SOURCE), str(source)], check=True)  # pip builds in place
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        check=True, capture_output=True,
    )
    sys.path.insert(0, str(target))
    plugins.reload_plugins()
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("memagent_dice")]:
        del sys.modules[name]
    plugins.reload_plugins()


def test_installed_plugin_adds_a_function_with_its_own_templates(dice_installed, scripted_agent):
    assert "memagent-dice 0.1.0" in plugins.plugin_names()
    agent, llm = scripted_agent([call("roll_dice", "let fate decide", faces=20, n=2), say("サイコロの結果が出たよ！")],
                                language="ja")
    seen, emit = _events()
    agent.send("サイコロ振って！", emit)
    prompt = llm.requests[0].prompt
    assert "- roll_dice(sides, count): ゲームのためにサイコロを振る。" in prompt  # the plugin's ja template
    result = next(m for m in agent.store.recall.all() if m.kind == "function_result")
    match = re.fullmatch(r"\[サイコロ\] (\d+) \+ (\d+) = (\d+)（20面）", result.content)
    assert match, result.content
    first, second, total = map(int, match.groups())
    assert 1 <= first <= 20 and 1 <= second <= 20 and first + second == total
    assert result.content in llm.requests[1].prompt


def test_installed_plugin_adds_a_command(dice_installed, home):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(dice_installed), *sys.path])}
    memagent = [sys.executable, "-m", "memagent"]
    listed = subprocess.run([*memagent, "--help"], env=env, capture_output=True, text=True, check=True)
    assert re.search(r"^\s+dice\s", listed.stdout, re.MULTILINE)
    rolled = subprocess.run([*memagent, "dice", "--sides", "6", "--count", "3", "--seed", "7"],
                            env=env, capture_output=True, text=True, check=True)
    match = re.fullmatch(r"3d6: (\d) \+ (\d) \+ (\d) = (\d+)\n", rolled.stdout)
    assert match and sum(map(int, match.groups()[:3])) == int(match.group(4))
    bad = subprocess.run([*memagent, "dice", "--sides", "1"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    with fake_openai_server(Behaviour("ok")) as url:
        (home / "config.ini").write_text(f"[llm]\nbase_url = {url}\n", encoding="utf-8")
        report = subprocess.run([*memagent, "doctor", "--no-call"], env=env, capture_output=True, text=True)
    assert re.search(r"^ok\s+plugins\s+memagent-dice 0\.1\.0$", click.unstyle(report.stdout), re.MULTILINE), report.stdout


class _ServerSideKit:
    """A test-only plugin object: a server profile, a backend and an embedder, one of each hook."""

    @memagent.hookimpl
    def register_server_profiles(self, register):
        from memagent.llm.profiles import ServerProfile

        register(ServerProfile(kind="my-server", sampler_fields={"top_k": "k"}, owned_by=("my-org",),
                               chat_constraint=lambda schema, grammar: {"guide": schema}))

    @memagent.hookimpl
    def register_backends(self, register):
        from memagent.llm.factory import BackendSpec

        from .fake_llm import ScriptedLLM

        register(BackendSpec("scripted", lambda settings, paths, progress: ScriptedLLM([say("from a plugin backend")])))

    @memagent.hookimpl
    def register_embedders(self, register):
        import numpy as np

        from memagent.memory.embeddings import EmbedderSpec

        class Letters:
            name, dim = "letters-26", 26

            def embed_passages(self, texts):
                return np.stack([self.embed_query(t) for t in texts])

            def embed_query(self, text):
                vector = np.zeros(26, dtype=np.float32) + 1e-3
                for char in text.lower():
                    if "a" <= char <= "z":
                        vector[ord(char) - 97] += 1
                return vector / np.linalg.norm(vector)

        register(EmbedderSpec("letters", lambda settings: Letters()))


@pytest.fixture
def server_side_kit() -> Iterator[None]:
    kit = _ServerSideKit()
    plugins.register_plugin(kit, name="kit")
    yield
    plugins.unregister_plugin(kit)


def test_built_in_names_known_without_plugins_match_the_registered_built_ins():
    from memagent.config import BUILTIN_NAMES
    from memagent.llm.factory import backends
    from memagent.llm.profiles import server_profiles
    from memagent.memory.embeddings import embedders

    assert set(BUILTIN_NAMES["server profile"]) == {"auto", *server_profiles()}
    assert set(BUILTIN_NAMES["backend"]) == {"auto", *backends()}
    assert set(BUILTIN_NAMES["embedding"]) == set(embedders())


def test_a_plugin_server_profile_backend_and_embedder_are_configurable(server_side_kit, paths, home):
    from memagent.config import load_settings
    from memagent.llm.base import GenerationRequest
    from memagent.llm.factory import make_backend
    from memagent.memory.embeddings import make_embedder

    (home / "config.ini").write_text("[llm]\nbackend = scripted\n[memory]\nembedding = letters\n", encoding="utf-8")
    settings = load_settings(paths, environ={})
    llm = make_backend(settings, paths, progress=False)
    assert "from a plugin backend" in llm.generate(GenerationRequest(prompt="hi")).text
    embedder = make_embedder(settings)
    assert embedder.name == "letters-26" and embedder.embed_passages(["cab", "zzz"]).shape == (2, 26)

    behaviour = Behaviour("ok", models=[{"id": "m", "owned_by": "my-org"}])
    with fake_openai_server(behaviour) as url:
        (home / "config.ini").write_text(f"[llm]\nbase_url = {url}\n", encoding="utf-8")
        from memagent.llm.openai_backend import OpenAIBackend

        server = OpenAIBackend(load_settings(paths, environ={}).llm)
        assert server.profile.kind == "my-server"  # detected from owned_by
        server.generate(GenerationRequest(messages=[{"role": "user", "content": "hi"}], schema={"type": "object"},
                                          sampling=load_settings(paths, environ={}).preset().model_copy(update={"top_k": 3})))
    body = behaviour.requests[-1]["body"]
    assert body["guide"] == {"type": "object"} and body["k"] == 3


def test_an_unknown_name_in_config_lists_the_registered_ones(server_side_kit, paths, home):
    from memagent.config import load_settings
    from memagent.errors import ConfigError

    (home / "config.ini").write_text("[llm]\nserver = my-srv\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(paths, environ={})
    assert "llm.server = 'my-srv' is not a known server profile" in str(caught.value)
    assert "'my-server'" in str(caught.value)
