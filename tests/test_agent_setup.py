"""The questions `memagent chat` asks on a first run (no agent yet), answered as a user would."""

from __future__ import annotations

from click.testing import CliRunner

from memagent.cli.context import AppContext
from memagent.cli.tui import choose_agent


def test_an_agent_name_that_is_not_allowed_is_asked_again_with_the_rule(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = AppContext(home=str(tmp_path))
    with CliRunner().isolation(input="こんにちは！はじめまして。\nyui\n\n") as streams:
        name, persona = choose_agent(app, None)
    shown = streams[0].getvalue().decode()
    assert (name, persona) == ("yui", "sakura")
    assert "is not allowed; use up to 64 letters" in shown and shown.count("Name for your new agent") == 2
