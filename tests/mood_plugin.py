"""A test-only plugin module: one agent function defined in one place, nothing else edited.

`set_mood(mood)` keeps the persona's mood in the agent's state; undoing the turn restores the old one.
It has no prompt template of its own, so functions/_default.j2 documents it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import memagent
from memagent.functions import AgentFunction, Execution, FunctionContext, FunctionParams
from memagent.memory.store import AgentStore


class SetMood(FunctionParams):
    mood: Literal["happy", "sulky", "sleepy"]
    request_heartbeat: bool = False


def _set_mood(ctx: FunctionContext, args: Mapping[str, object]) -> Execution:
    previous = ctx.store.get_state("mood")
    ctx.store.set_state("mood", args["mood"])
    return Execution(ok=True, result_text=f"mood is now {args['mood']}", summary=str(args["mood"]),
                     record={"previous": previous})


def _undo_mood(store: AgentStore, record: Mapping[str, object]) -> None:
    store.set_state("mood", record.get("previous"))


SET_MOOD = AgentFunction("set_mood", SetMood, _set_mood, example={"mood": "happy", "request_heartbeat": False},
                         aliases={"feeling": "mood"}, undo=_undo_mood)


class CheckWeather(FunctionParams):
    city: str
    request_heartbeat: bool = True


def _check_weather(ctx: FunctionContext, args: Mapping[str, object]) -> Execution:
    raise ConnectionError("weather service unreachable")  # a plugin's bug or outage


CHECK_WEATHER = AgentFunction("check_weather", CheckWeather, _check_weather,
                              example={"city": "Tokyo", "request_heartbeat": True}, needs_memory=False)


@memagent.hookimpl
def register_functions(register: Callable[[AgentFunction], None]) -> None:
    register(SET_MOOD)
    register(CHECK_WEATHER)
