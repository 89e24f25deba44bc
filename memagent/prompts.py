"""Prompt templates: every word the model reads comes from a Jinja file under prompts/<lang>/.

The search path is `$MEMAGENT_HOME/prompts/<lang>/` first, then the packaged `prompts/<lang>/`, so a
user can shadow one file (say `functions.j2`) and keep the rest. Undefined variables are errors
(StrictUndefined) and every template error becomes one line "file:line: message".
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from .errors import MemagentError
from .files import read_text
from .functions.registry import function_registry
from .paths import Paths, packaged_resource_dir

if TYPE_CHECKING:
    from .personas import Human, Persona

LANGUAGES = ("ja", "en")
# The system prompt's parts, each rendered from `<part>.j2`, then joined by system.j2.
SYSTEM_PARTS = ("preamble", "persona", "human", "memory_status", "functions")
TEMPLATE_SUFFIX = ".j2"


class PromptError(MemagentError):
    """A prompt template is missing, does not parse, or uses a variable nobody passed."""


@dataclass(frozen=True)
class SystemPrompt:
    """The rendered system prompt: the joined text and each part (for wrappers that lay parts out)."""

    text: str
    parts: dict[str, str] = field(default_factory=dict)
    # Reply texts the templates show as examples (`{{ example_reply("…") }}`): a reply that copies
    # one is junk, and the agent checks against these instead of reading the prompt back.
    example_replies: tuple[str, ...] = ()


def to_json(value: Any, indent: int | None = None) -> str:
    """`tojson` for prompts: keeps Japanese readable and does not HTML-escape <, >, & like Jinja's."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


def merge(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """`a | merge(b)`: a new dict with a's keys first (so `inner_thoughts` can lead), then b's."""
    return {**first, **second}


def make_environment(loader: jinja2.BaseLoader | None = None) -> jinja2.Environment:
    """The Jinja settings shared by prompt templates and wrapper files."""
    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson"] = to_json
    env.filters["merge"] = merge
    return env


def template_error_location(exc: BaseException, filenames: Sequence[str]) -> tuple[str, int] | None:
    """(file, line) of the innermost template frame in a render error's traceback.

    Jinja rewrites tracebacks so that template code appears as frames with the template's file name
    and line; `filenames` says which frame names count as templates.
    """
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in filenames or frame.filename.endswith(TEMPLATE_SUFFIX):
            return frame.filename, frame.lineno or 0
    return None


def describe_template_error(exc: Exception, undefined_hint: str = "pass that variable or remove it from the template") -> str:
    """One line for a Jinja error (syntax or render); `undefined_hint` is added to unknown-variable errors."""
    if isinstance(exc, jinja2.UndefinedError):
        message = f"{exc.message}; {undefined_hint}"
    elif isinstance(exc, jinja2.TemplateSyntaxError):
        message = exc.message or "syntax error"
    else:
        message = str(exc) or type(exc).__name__
    return " ".join(message.split())


class PromptLibrary:
    """The prompt templates for one language, with the user's files shadowing packaged ones."""

    def __init__(self, paths: Paths, language: str) -> None:
        if language not in LANGUAGES:
            raise PromptError(f"language {language!r} has no prompt templates; use one of: {', '.join(LANGUAGES)}")
        self.paths = paths
        self.language = language
        # Plugin functions' templates come last: the user's files and ours shadow them.
        self.search_path = [
            paths.user_resource_dir("prompts") / language,
            packaged_resource_dir("prompts") / language,
            *(f.templates / language for f in function_registry() if f.templates is not None),
        ]
        self.env = make_environment(jinja2.FileSystemLoader([str(p) for p in self.search_path]))
        self._lists: dict[str, list[str]] = {}

    def source_of(self, template_name: str) -> Path | None:
        """The file that `template_name` resolves to (user override first), or None."""
        for folder in self.search_path:
            candidate = folder / template_name
            if candidate.is_file():
                return candidate
        return None

    def word_list(self, file_name: str) -> list[str]:
        """The lines of a plain list file (e.g. cliches.txt), without blank lines and `#` comments;
        empty when the file is missing. The user's copy shadows the packaged one."""
        if file_name not in self._lists:
            source = self.source_of(file_name)
            text = read_text(source, PromptError) if source is not None else ""
            self._lists[file_name] = [line.strip() for line in text.splitlines()
                                      if line.strip() and not line.lstrip().startswith("#")]
        return self._lists[file_name]

    def names(self) -> list[str]:
        return sorted(self.env.list_templates(extensions=[TEMPLATE_SUFFIX[1:]]))

    def render(self, template_name: str, **variables: Any) -> str:
        """Render one template. The file's final newline is not part of the text."""
        try:
            template = self.env.get_template(template_name)
        except jinja2.TemplateNotFound as exc:
            where = " or ".join(str(p) for p in self.search_path)
            raise PromptError(
                f"prompt template {exc.name!r} not found in {where}; restore the file or check its name"
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(f"{exc.filename or template_name}:{exc.lineno}: {describe_template_error(exc)}") from None
        try:
            text = template.render(**variables)
        except Exception as exc:  # any error inside a user-editable template is reported, not raised raw
            if isinstance(exc, MemagentError):
                raise
            location = template_error_location(exc, [template.filename or ""])
            file, line = location if location else (template.filename or template_name, 0)
            raise PromptError(f"{file}:{line}: {describe_template_error(exc)}") from None
        return text.rstrip("\n")

    def render_system(
        self,
        *,
        persona: Persona,
        human: Human,
        core: Mapping[str, Mapping[str, Any]],
        recall_count: int = 0,
        archival_count: int = 0,
        summary: str | None = None,
        functions: Sequence[str] | None = None,
        now: str = "",
        output: str = "json",
        memory_mode: str = "agent",
    ) -> SystemPrompt:
        """Render each part of the system prompt, then system.j2, which joins them.

        `output` is the wrapper's output style ("json" | "action" | "tool_call"); the preamble shows
        the call shape in that style.
        """
        examples: list[str] = []

        def example_reply(text: str) -> str:
            examples.append(text)
            return text

        variables: dict[str, Any] = {
            "example_reply": example_reply,
            "memory_mode": memory_mode,
            "persona": persona,
            "human": human,
            "core": core,
            "recall_count": recall_count,
            "archival_count": archival_count,
            "summary": summary,
            "functions": list(functions) if functions is not None else function_registry().names(),
            # Each function's parameter names, for functions/_default.j2 (a function with no line of its own).
            "function_params": {f.name: f.param_names for f in function_registry()},
            "now": now,
            "output": output,
        }
        parts = {part: self.render(f"{part}.j2", **variables).strip() for part in SYSTEM_PARTS}
        text = self.render("system.j2", parts=parts, **variables).strip()
        return SystemPrompt(text=text, parts=parts, example_replies=tuple(dict.fromkeys(examples)))


def core_from(persona: Persona, human: Human, limit: int) -> dict[str, dict[str, Any]]:
    """Initial core memory for a new agent: the persona's and human's text, each with `limit` chars."""
    return {
        "persona": {"value": persona.text, "limit": limit},
        "human": {"value": human.text, "limit": limit},
    }
