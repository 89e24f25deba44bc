"""Runs one validated function call through its registered handler."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .config import Settings
from .conversation import FunctionCall
from .errors import MemagentError
from .functions.base import Execution, FunctionContext
from .functions.registry import function_registry
from .prompts import PromptLibrary

if TYPE_CHECKING:
    from .memory.store import AgentStore

__all__ = ["Execution", "FunctionExecutor"]
log = logging.getLogger(__name__)


class FunctionExecutor:
    def __init__(self, store: AgentStore, prompts: PromptLibrary, settings: Settings) -> None:
        self.store = store
        self.prompts = prompts
        self.page_size = settings.memory.search_limit

    def execute(self, call: FunctionCall, turn_id: int) -> Execution:
        function = function_registry()[call.function]
        context = FunctionContext(self.store, self.prompts, self.page_size, turn_id)
        try:
            return function.run(context, call.arguments)
        except MemagentError:
            raise  # the store's own failures (disk full, locked database) end the turn as before
        except Exception as exc:
            log.exception("agent function %s failed", call.function)
            error = f"{type(exc).__name__}: {exc}"
            text = self.prompts.render("result_function_error.j2", function=call.function, error=error)
            return Execution(ok=False, result_text=text, summary=f"failed: {type(exc).__name__}")
