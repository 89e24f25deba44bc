"""What one agent function is: its definition (`AgentFunction`), what running it returns
(`Execution`) and what a handler may use (`FunctionContext`).

Everything else about a function — the call schema and GBNF, the function docs in the prompt, the
parser's argument aliases, dispatch, the heartbeat rule and undo — is derived from its definition, so
adding a function is one definition (plus its templates), registered through the
`register_functions` plugin hook.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from memagent.memory.store import AgentStore
    from memagent.prompts import PromptLibrary

# A JSON value as stored with a function result (the `record` of an Execution).
JSONValue = str | int | float | bool | None | list["JSONValue"] | dict[str, "JSONValue"]
Arguments = Mapping[str, object]


class FunctionParams(BaseModel):
    """Base for every function's params: unknown keys are errors here (the parser drops them first)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


@dataclass
class Execution:
    ok: bool
    result_text: str | None  # what the model reads next (None: nothing to read, e.g. send_message)
    summary: str  # a short line for the UI, e.g. "3 hits"
    memory_changed: bool = False  # core memory changed: the system prompt must be rebuilt
    # Stored with the result and handed back to `undo` (e.g. the ids of inserted passages).
    record: dict[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionContext:
    """What a handler works with: the agent's memory, its prompt templates (for the result text) and
    the configured page size of searches."""

    store: AgentStore
    prompts: PromptLibrary
    page_size: int
    turn_id: int


Handler = Callable[[FunctionContext, Arguments], Execution]
# Reverts what a call did, given the record its Execution stored; runs inside undo's transaction.
Undo = Callable[["AgentStore", Mapping[str, object]], None]


@dataclass(frozen=True)
class AgentFunction:
    """One agent function, defined once.

    - `params`: the pydantic model of its arguments; the schema the model is constrained to and the
      validation of every parsed call come from it.
    - `run`: executes a validated call (`FunctionContext`, validated arguments as a dict).
    - `example`: one correct params object (shown in parse-error notes and the prompt's examples).
    - `aliases`: other names local models write for a parameter (MemGPT's `name` for `label`, …).
    - `ends_chain`: the loop stops after this call (send_message, pause_heartbeats); otherwise it goes
      on when the call sets request_heartbeat, or until the user has been answered.
    - `needs_memory`: offered only when `[memory] mode` is not `off` (there, only send_message and
      functions that set this False are offered).
    - `undo`: reverts the call's side effects when its turn is undone or retried.
    - `templates`: a folder with `<lang>/functions/<name>.j2` (the function's line in the prompt)
      and any result templates the handler renders; a plugin ships its own, the user can shadow them.
    """

    name: str
    params: type[FunctionParams]
    run: Handler
    example: Mapping[str, object]
    aliases: Mapping[str, str] = field(default_factory=dict)
    ends_chain: bool = False
    needs_memory: bool = True
    undo: Undo | None = None
    templates: Path | None = None

    def __post_init__(self) -> None:
        unknown = [target for target in self.aliases.values() if target not in self.params.model_fields]
        if unknown:
            raise ValueError(f"agent function {self.name!r}: aliases point at unknown params {unknown}")
        self.params.model_validate(dict(self.example))  # a wrong example would teach the model a wrong call

    @property
    def param_names(self) -> list[str]:
        return list(self.params.model_fields)
