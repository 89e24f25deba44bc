"""memagent's own commands, registered through the same hook a plugin uses."""

from __future__ import annotations

import click

from ..plugins import hookimpl


@hookimpl
def register_commands(cli: click.Group) -> None:
    from . import agents_cmds, chat_cmd, db_cmds, doctor_cmd, memory_cmds, persona_cmds, serve_cmd, wrapper_cmds

    for module in (chat_cmd, doctor_cmd, persona_cmds, wrapper_cmds, memory_cmds, agents_cmds, serve_cmd, db_cmds):
        module.register(cli)
