"""Dice for tabletop-minded personas: `roll_dice(sides, count)` for the agent, `memagent dice` for you."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

import click
from pydantic import Field

import memagent
from memagent.functions import AgentFunction, Execution, FunctionContext, FunctionParams


class RollDice(FunctionParams):
    sides: Annotated[int, Field(ge=2, le=100)] = 6
    count: Annotated[int, Field(ge=1, le=10)] = 1
    request_heartbeat: bool = True


def roll(sides: int, count: int, rng: random.Random | None = None) -> list[int]:
    rng = rng or random.Random()
    return [rng.randint(1, sides) for _ in range(count)]


def _roll_dice(ctx: FunctionContext, args: Mapping[str, object]) -> Execution:
    sides, count = int(str(args.get("sides", 6))), int(str(args.get("count", 1)))
    rolls = roll(sides, count)
    text = ctx.prompts.render("result_roll_dice.j2", rolls=rolls, sides=sides, total=sum(rolls))
    return Execution(ok=True, result_text=text, summary=f"{count}d{sides} = {sum(rolls)}", record={"rolls": rolls})


ROLL_DICE = AgentFunction(
    "roll_dice", RollDice, _roll_dice,
    example={"sides": 6, "count": 1, "request_heartbeat": True},
    aliases={"faces": "sides", "dice": "count", "n": "count"},
    needs_memory=False,
    templates=Path(__file__).parent / "templates",
)


@memagent.hookimpl
def register_functions(register: Callable[[AgentFunction], None]) -> None:
    register(ROLL_DICE)


@memagent.hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command(name="dice")
    @click.option("--sides", type=click.IntRange(2, 100), default=6, show_default=True)
    @click.option("--count", type=click.IntRange(1, 10), default=1, show_default=True)
    @click.option("--seed", type=int, default=None, help="Same seed, same rolls.")
    def dice(sides: int, count: int, seed: int | None) -> None:
        """Roll dice the way a persona's roll_dice function does."""
        rolls = roll(sides, count, random.Random(seed))
        click.echo(f"{count}d{sides}: {' + '.join(map(str, rolls))} = {sum(rolls)}")
