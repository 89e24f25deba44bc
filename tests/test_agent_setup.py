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


def test_with_agents_listed_a_number_chooses_one_and_anything_else_is_a_name_checked_at_the_question(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = AppContext(home=str(tmp_path))
    for agent in ("alpha", "beta"):
        (app.paths.agent_dir(agent)).mkdir(parents=True)
        (app.paths.agent_dir(agent) / "agent.db").touch()
    with CliRunner().isolation(input="２\n") as streams:
        assert choose_agent(app, "sakura") == ("beta", "sakura")  # a full-width digit from an IME
    # A number that is not on the list is a name like any other: 65 digits break the name rule and
    # are asked again, where they used to pass the question unchecked; 「²」 used to end in a traceback.
    with CliRunner().isolation(input="9" * 65 + "\n²\n") as streams:
        name, _ = choose_agent(app, "sakura")
    shown = streams[0].getvalue().decode()
    assert name == "²" and "is not allowed; use up to 64 letters" in shown
