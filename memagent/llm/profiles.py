"""Server profiles: how each OpenAI-compatible server takes a JSON-schema constraint and which
sampler fields it accepts. They differ, and several silently ignore a field in the wrong shape, so
each server gets exactly the fields it understands and everything else is dropped (debug log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import plugins
from ..config import SamplerPreset
from ..plugins import hookimpl

log = logging.getLogger(__name__)
Mode = Literal["raw", "chat"]
ConstraintBuilder = Callable[[dict[str, Any], str | None], dict[str, Any]]

# Fields every OpenAI-compatible endpoint takes as ordinary request parameters.
STANDARD_FIELDS = {"temperature", "top_p", "presence_penalty", "frequency_penalty", "seed"}


def _gbnf(schema: dict[str, Any], grammar: str | None) -> str:
    """The caller's GBNF when it has one (it also bounds integers), else converted from the schema."""
    if grammar is not None:
        return grammar
    from ..functions.grammar import schema_to_gbnf

    return schema_to_gbnf(schema)


def _openai_json_schema(schema: dict[str, Any], grammar: str | None = None) -> dict[str, Any]:
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "function_call", "strict": True, "schema": schema}}}


@dataclass(frozen=True)
class ServerProfile:
    kind: str
    # our sampler name → the server's field name (sent through extra_body)
    sampler_fields: dict[str, str] = field(default_factory=dict)
    raw_constraint: ConstraintBuilder | None = None
    chat_constraint: ConstraintBuilder | None = None
    # endpoint (relative to the server root) and shapes for counting tokens, if the server has one
    tokenize_path: str | None = None
    tokenize_body: Callable[[str], dict[str, Any]] | None = None
    tokenize_count: Callable[[dict[str, Any]], int] | None = None
    # `owned_by` values in the server's /v1/models that identify it (auto-detection).
    owned_by: tuple[str, ...] = ()

    def constraint(self, schema: dict[str, Any], mode: Mode, grammar: str | None = None) -> dict[str, Any] | None:
        builder = self.raw_constraint if mode == "raw" else self.chat_constraint
        return builder(schema, grammar) if builder else None

    def supports_constraint(self, mode: Mode) -> bool:
        return (self.raw_constraint if mode == "raw" else self.chat_constraint) is not None

    def sampler_body(self, sampling: SamplerPreset) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split a preset into (standard parameters, extra_body fields) for this server."""
        standard: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in sampling.model_dump(exclude_none=True).items():
            if name in STANDARD_FIELDS:
                standard[name] = value
            elif name in self.sampler_fields:
                extra[self.sampler_fields[name]] = value
            else:
                log.debug("server profile %s does not take sampler field %s; not sent", self.kind, name)
        return standard, extra


_LLAMA_SAMPLERS = {
    "top_k": "top_k", "min_p": "min_p", "typical_p": "typical_p", "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n", "mirostat": "mirostat", "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
}

BUILTIN_PROFILES: dict[str, ServerProfile] = {
    # llama.cpp's llama-server: `json_schema` on completions, response_format on chat; /tokenize.
    "llamacpp": ServerProfile(
        kind="llamacpp",
        owned_by=("llamacpp",),
        sampler_fields=_LLAMA_SAMPLERS,
        raw_constraint=lambda s, g: {"json_schema": s},
        chat_constraint=lambda s, g: {"response_format": {"type": "json_object", "schema": s}},
        tokenize_path="/tokenize",
        tokenize_body=lambda text: {"content": text, "add_special": False},
        tokenize_count=lambda body: len(body["tokens"]),
    ),
    # llama-cpp-python's server: GBNF `grammar` on completions, response_format+schema on chat.
    "llama-cpp-python": ServerProfile(
        kind="llama-cpp-python",
        owned_by=("me",),
        # Its request models have no typical_p or repeat_last_n (they would be dropped silently).
        sampler_fields={"top_k": "top_k", "min_p": "min_p", "repeat_penalty": "repeat_penalty",
                        "mirostat": "mirostat_mode", "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta"},
        raw_constraint=lambda s, g: {"grammar": _gbnf(s, g)},
        chat_constraint=lambda s, g: {"response_format": {"type": "json_object", "schema": s}},
        tokenize_path="/extras/tokenize/count",
        tokenize_body=lambda text: {"input": text},
        tokenize_count=lambda body: int(body["count"]),
    ),
    "lmstudio": ServerProfile(
        kind="lmstudio",
        owned_by=("organization_owner",),
        # Its documented payload parameters: OpenAI's plus top_k and repeat_penalty.
        sampler_fields={"top_k": "top_k", "repeat_penalty": "repeat_penalty"},
        chat_constraint=_openai_json_schema,
    ),
    "tabbyapi": ServerProfile(
        kind="tabbyapi",
        owned_by=("tabbyapi",),
        sampler_fields={
            "top_k": "top_k", "min_p": "min_p", "typical_p": "typical", "repeat_penalty": "repetition_penalty",
            "mirostat": "mirostat_mode", "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta",
        },
        raw_constraint=lambda s, g: {"json_schema": s},
        chat_constraint=lambda s, g: {"json_schema": s},
        tokenize_path="/v1/token/encode",
        tokenize_body=lambda text: {"text": text, "add_bos_token": False},
        tokenize_count=lambda body: int(body["length"]),
    ),
    "vllm": ServerProfile(
        kind="vllm",
        owned_by=("vllm",),
        sampler_fields={"top_k": "top_k", "min_p": "min_p", "repeat_penalty": "repetition_penalty"},
        raw_constraint=lambda s, g: {"structured_outputs": {"json": s}},
        chat_constraint=lambda s, g: {"structured_outputs": {"json": s}},
        tokenize_path="/tokenize",
        tokenize_body=lambda text: {"prompt": text, "add_special_tokens": False},
        tokenize_count=lambda body: int(body["count"]),
    ),
    # Ollama's /v1 layer takes only OpenAI fields; structured output via response_format on chat.
    "ollama": ServerProfile(kind="ollama", owned_by=("library",), chat_constraint=_openai_json_schema),
    "koboldcpp": ServerProfile(
        kind="koboldcpp",
        owned_by=("koboldcpp",),
        sampler_fields={
            "top_k": "top_k", "min_p": "min_p", "typical_p": "typical", "repeat_penalty": "rep_pen",
            "mirostat": "mirostat", "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta",
        },
        raw_constraint=lambda s, g: {"grammar": _gbnf(s, g)},
        chat_constraint=lambda s, g: {"grammar": _gbnf(s, g)},
        tokenize_path="/api/extra/tokencount",
        tokenize_body=lambda text: {"prompt": text},
        tokenize_count=lambda body: int(body["value"]),
    ),
    "generic": ServerProfile(kind="generic", chat_constraint=_openai_json_schema),
}


@hookimpl
def register_server_profiles(register: Callable[[ServerProfile], None]) -> None:
    for profile in BUILTIN_PROFILES.values():
        register(profile)


_cached: tuple[int, dict[str, ServerProfile]] | None = None


def server_profiles() -> dict[str, ServerProfile]:
    """Every registered server profile by kind (`[llm] server`), built-ins first."""
    global _cached
    if _cached is None or _cached[0] != plugins.generation():
        profiles: dict[str, ServerProfile] = {}
        for profile in plugins.collect("register_server_profiles", ServerProfile):
            if profile.kind in profiles or profile.kind == "auto":
                raise plugins.PluginError(f"server profile {profile.kind!r} is registered twice; "
                                          "uninstall one of the plugins that define it")
            profiles[profile.kind] = profile
        _cached = (plugins.generation(), profiles)
    return _cached[1]


def owned_by_hints() -> dict[str, str]:
    """`owned_by` values in /v1/models → the server kind they identify."""
    return {owner: profile.kind for profile in server_profiles().values() for owner in profile.owned_by}
