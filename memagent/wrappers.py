"""Wrappers: one TOML file per model prompt format (wrappers/<name>.toml), pure data plus Jinja.

A wrapper says how the conversation becomes the model's input and how the model's reply looks:
raw mode renders the whole prompt text with `prompt`; chat mode (/v1/chat/completions, the server
applies the model's own template) only lays out the messages following `[chat]`. Adding a wrapper
for a new model is adding one file; see docs/customizing.md.
"""

from __future__ import annotations

import re
import tomllib
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import jinja2

from .conversation import ChatMessage, FunctionCall
from .errors import MemagentError, NotFoundError
from .files import read_text
from .paths import Paths
from .prompts import SYSTEM_PARTS, SystemPrompt, describe_template_error, make_environment
from .resources import find_resource, list_resources

SUFFIXES = (".toml",)
OutputStyle = Literal["json", "action", "tool_call"]
OUTPUT_STYLES: tuple[str, ...] = get_args(OutputStyle)
DEFAULT_CALL_TEMPLATE = "{{ call | tojson }}"
TOP_LEVEL_KEYS = ("name", "description", "bos", "stop", "prefill", "output", "constrained", "prompt", "call", "chat")
CHAT_KEYS = ("system_role", "function_role", "function_prefix", "merge_consecutive")
TEMPLATE_VARIABLES = {"prompt": ("bos", "system", "parts", "messages", "prefill"), "call": ("call",)}
TEMPLATE_NAME = "<wrapper>"  # the frame name Jinja gives templates compiled from strings


class WrapperError(MemagentError):
    """A wrapper file is malformed or one of its templates fails."""


@dataclass(frozen=True)
class ChatLayout:
    """How messages are laid out for a server that applies the model's own chat template."""

    system_role: Literal["system", "user"] = "system"  # "user": merged into the first user message
    function_role: str = "user"
    function_prefix: str = ""
    merge_consecutive: bool = False  # join neighbouring messages of one role (strict-alternation templates)


@dataclass(frozen=True)
class _Template:
    """A compiled Jinja string from the wrapper file, with the file line where it starts."""

    key: str
    template: jinja2.Template
    first_line: int

    def render(self, source: Path, **variables: Any) -> str:
        try:
            return self.template.render(**variables)
        except Exception as exc:  # templates are user data: report where, never a traceback
            line = 0
            for frame in reversed(traceback.extract_tb(exc.__traceback__)):
                if frame.filename == TEMPLATE_NAME:
                    line = self.first_line + (frame.lineno or 1) - 1
                    break
            hint = f"the `{self.key}` template can use: {', '.join(TEMPLATE_VARIABLES[self.key])}"
            raise WrapperError(f"{source}:{line}: `{self.key}` template: {describe_template_error(exc, hint)}") from None


@dataclass(frozen=True)
class Wrapper:
    name: str
    description: str
    bos: str
    stop: list[str]
    prefill: str
    output: OutputStyle
    constrained: bool
    chat: ChatLayout
    source: Path
    prompt_template: _Template = field(repr=False)
    call_template: _Template = field(repr=False)

    def format_call(self, call: FunctionCall) -> str:
        """An assistant call as it is written back into the history (and shown in examples)."""
        return self.call_template.render(self.source, call=call.to_json_obj())

    def render(self, system: SystemPrompt | tuple[str, Mapping[str, str]] | str, messages: Sequence[ChatMessage],
               prefill: bool = True) -> str:
        """The complete raw prompt, ending with the generation header and the prefill (unless
        `prefill` is False: output that is not a call, such as captured facts, starts bare)."""
        text, parts = _system_text_and_parts(system)
        return self.prompt_template.render(
            self.source,
            bos=self.bos,
            system=text,
            parts=parts,
            messages=[self._message_view(m) for m in messages],
            prefill=self.prefill if prefill else "",
        )

    def chat_messages(
        self, system: SystemPrompt | tuple[str, Mapping[str, str]] | str, messages: Sequence[ChatMessage]
    ) -> list[dict[str, str]]:
        """OpenAI-style messages for /v1/chat/completions, laid out per the `[chat]` table."""
        text, _ = _system_text_and_parts(system)
        out: list[dict[str, str]] = []
        if self.chat.system_role == "system":
            out.append({"role": "system", "content": text})
        for message in messages:
            if message.role == "assistant":
                out.append({"role": "assistant", "content": self._assistant_text(message)})
            elif message.role == "function":
                out.append({"role": self.chat.function_role, "content": self.chat.function_prefix + message.content})
            elif message.role == "system":
                out.append({"role": self.chat.system_role, "content": message.content})
            else:
                out.append({"role": "user", "content": message.content})
        if self.chat.system_role == "user":
            if out and out[0]["role"] == "user":
                out[0] = {"role": "user", "content": f"{text}\n\n{out[0]['content']}"}
            else:
                out.insert(0, {"role": "user", "content": text})
        if self.chat.merge_consecutive:
            out = _merge_consecutive(out)
        return out

    def _assistant_text(self, message: ChatMessage) -> str:
        return self.format_call(message.call) if message.call is not None else message.content

    def _message_view(self, message: ChatMessage) -> dict[str, Any]:
        return {
            "role": message.role,
            "content": message.content,
            "name": message.name,
            "call_text": self._assistant_text(message) if message.role == "assistant" else "",
        }


def _system_text_and_parts(system: SystemPrompt | tuple[str, Mapping[str, str]] | str) -> tuple[str, dict[str, str]]:
    if isinstance(system, SystemPrompt):
        text, parts = system.text, dict(system.parts)
    elif isinstance(system, tuple):
        text, parts = system[0], dict(system[1])
    else:
        text, parts = system, {"preamble": system}
    # A wrapper that lays out parts must not fail because a caller passed only the text.
    return text, {part: parts.get(part, "") for part in SYSTEM_PARTS} | parts


def _merge_consecutive(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    merged: list[dict[str, str]] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            merged[-1] = {"role": message["role"], "content": f"{merged[-1]['content']}\n\n{message['content']}"}
        else:
            merged.append(dict(message))
    return merged


def _key_line(raw: str, key: str) -> int:
    """The 1-based file line where a template string's text starts (after `key = '''` and its newline)."""
    match = re.search(rf"^\s*{re.escape(key)}\s*=\s*('''|\"\"\")?(\r?\n)?", raw, re.MULTILINE)
    if match is None:
        return 1
    line = raw.count("\n", 0, match.start()) + 1
    return line + 1 if match.group(1) and match.group(2) else line


_ENV = make_environment()


def _compile(source: Path, raw: str, key: str, text: str) -> _Template:
    first_line = _key_line(raw, key)
    try:
        code = _ENV.compile(text, name=None, filename=TEMPLATE_NAME)
        template = _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None))
    except jinja2.TemplateSyntaxError as exc:
        line = first_line + (exc.lineno or 1) - 1
        raise WrapperError(f"{source}:{line}: `{key}` template: {describe_template_error(exc)}") from None
    return _Template(key=key, template=template, first_line=first_line)


def _require(source: Path, data: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    value = data[key]
    if not isinstance(value, kind):
        raise WrapperError(f"{source}: `{key}` must be {what}; got {value!r}")
    return value


def load_wrapper_file(source: Path) -> Wrapper:
    raw = read_text(source, WrapperError)
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise WrapperError(f"{source}: not valid TOML: {exc}") from None

    unknown = [key for key in data if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise WrapperError(f"{source}: unknown key `{unknown[0]}`; known keys: {', '.join(TOP_LEVEL_KEYS)}")
    if "prompt" not in data:
        raise WrapperError(f"{source}: missing `prompt`, the Jinja template of the whole raw prompt; see wrappers/chatml.toml")
    name = _require(source, data, "name", str, "a string") if "name" in data else source.stem
    if name != source.stem:
        raise WrapperError(f"{source}: name = {name!r} does not match the file name; rename the file or set name = {source.stem!r}")
    output = data.get("output", "json")
    if output not in OUTPUT_STYLES:
        raise WrapperError(f"{source}: output = {output!r} is not allowed; use one of: {', '.join(OUTPUT_STYLES)}")
    defaults: dict[str, Any] = {"description": "", "bos": "", "prefill": "", "stop": [], "constrained": output == "json"}
    values = {**defaults, **{k: v for k, v in data.items() if k in defaults}}
    for key in ("description", "bos", "prefill"):
        _require(source, values, key, str, "a string")
    stop = _require(source, values, "stop", list, "a list of strings, e.g. [\"<|im_end|>\"]")
    if not all(isinstance(s, str) and s for s in stop):
        raise WrapperError(f"{source}: `stop` must be a list of non-empty strings, e.g. [\"<|im_end|>\"]")
    constrained = _require(source, values, "constrained", bool, "true or false")
    prompt = _require(source, data, "prompt", str, "a string (a Jinja template)")
    call = _require(source, data, "call", str, "a string (a Jinja template)") if "call" in data else DEFAULT_CALL_TEMPLATE

    return Wrapper(
        name=name,
        description=values["description"],
        bos=values["bos"],
        stop=list(stop),
        prefill=values["prefill"],
        output=output,
        constrained=constrained,
        chat=_chat_layout(source, data.get("chat", {})),
        source=source,
        prompt_template=_compile(source, raw, "prompt", prompt),
        call_template=_compile(source, raw, "call", call),
    )


def _chat_layout(source: Path, table: Any) -> ChatLayout:
    if not isinstance(table, dict):
        raise WrapperError(f"{source}: `chat` must be a table: a [chat] section")
    unknown = [key for key in table if key not in CHAT_KEYS]
    if unknown:
        raise WrapperError(f"{source}: unknown key `chat.{unknown[0]}`; known keys in [chat]: {', '.join(CHAT_KEYS)}")
    layout = ChatLayout(**table)
    if layout.system_role not in ("system", "user"):
        raise WrapperError(f"{source}: chat.system_role = {layout.system_role!r}; use \"system\" or \"user\"")
    for key in ("function_role", "function_prefix"):
        if not isinstance(getattr(layout, key), str):
            raise WrapperError(f"{source}: chat.{key} must be a string")
    if not layout.function_role:
        raise WrapperError(f"{source}: chat.function_role is empty; use \"user\" (or \"tool\" if the server supports it)")
    if not isinstance(layout.merge_consecutive, bool):
        raise WrapperError(f"{source}: chat.merge_consecutive must be true or false")
    return layout


def list_wrappers(paths: Paths) -> dict[str, Path]:
    """Name → file for every wrapper (user files shadow packaged ones), sorted by name."""
    return list_resources(paths, "wrappers", SUFFIXES)


def load_wrapper(paths: Paths, name: str) -> Wrapper:
    path = find_resource(paths, "wrappers", f"{name}.toml") if re.match(r"^[\w.-]+$", name) else None
    if path is None:
        known = ", ".join(list_wrappers(paths)) or "(none)"
        raise NotFoundError(
            f"no wrapper named {name!r}; known: {known} (add one as {paths.user_resource_dir('wrappers')}/{name}.toml)"
        )
    return load_wrapper_file(path)
