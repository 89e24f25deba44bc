"""`memagent agents …`: create, list, show, delete and rename agents."""

from __future__ import annotations

from typing import Any

import click

from ..errors import MemagentError
from .context import AppContext, pass_app
from .memory_cmds import agent_lock, confirm_or_abort, echo_json, echo_stats, json_option, open_agent


def _summary(app: AppContext, name: str) -> dict[str, Any]:
    with open_agent(app, name) as store:
        info = store.info
        return {"name": name, "persona": info.persona, "human": info.human, "language": info.language,
                "created_at": info.created_at.isoformat(), "messages": store.recall.count(),
                "passages": store.archival.count()}


def _summary_or_problem(app: AppContext, name: str) -> dict[str, Any]:
    """One damaged agent must not hide the others: its row says what is wrong instead."""
    try:
        return _summary(app, name)
    except MemagentError as exc:
        return {"name": name, "problem": str(exc)}


def register(cli: click.Group) -> None:
    @cli.group()
    def agents() -> None:
        """Create, list, show, delete and rename agents."""

    @agents.command()
    @click.argument("name")
    @click.option("--persona", help="Persona profile (personas/NAME.md; default: [agent] persona).")
    @click.option("--human", help="Human profile (humans/NAME.md; default: [agent] human, or the language's default).")
    @json_option
    @pass_app
    def create(app: AppContext, name: str, persona: str | None, human: str | None, as_json: bool) -> None:
        """Create agent NAME without starting a chat (then `memory import`, `chat --agent NAME`)."""
        from ..creation import create_agent
        from ..memory.store import check_agent_name

        check_agent_name(name)
        with agent_lock(app, name, must_exist=False):  # a chat starting on this name meanwhile is refused
            store, persona_profile, human_profile = create_agent(app.paths, app.settings, name,
                                                                 persona=persona, human=human)
            store.close()
        if as_json:
            echo_json(_summary(app, name))
        else:
            click.echo(f"created agent {name} (persona {persona_profile.key}, human {human_profile.key}, "
                       f"language {store.info.language}); chat with `memagent chat --agent {name}`")

    @agents.command("list")
    @json_option
    @pass_app
    def list_cmd(app: AppContext, as_json: bool) -> None:
        """Every agent, with its persona and how much it remembers."""
        from ..memory.store import AgentStore

        rows = [_summary_or_problem(app, name) for name in AgentStore.list_agents(app.paths, app.settings)]
        if as_json:
            echo_json(rows)
        elif not rows:
            click.echo("no agents yet; `memagent agents create NAME` or `memagent chat --agent NAME` makes one")
        for row in rows if not as_json else []:
            if "problem" in row:
                click.echo(f"{row['name']}\tUNREADABLE: {row['problem']}")
                continue
            click.echo(f"{row['name']}\tpersona={row['persona'] or '-'}\tlanguage={row['language']}\t"
                       f"{row['messages']} messages\t{row['passages']} passages\tcreated {row['created_at'][:10]}")

    @agents.command()
    @click.argument("name")
    @json_option
    @pass_app
    def show(app: AppContext, name: str, as_json: bool) -> None:
        """Details of agent NAME: profile, counts, index state, folder."""
        with open_agent(app, name) as store:
            data = {**_summary(app, name), "uid": store.info.uid, "folder": str(app.paths.agent_dir(name)),
                    **{k: v for k, v in store.stats().items() if k != "agent"}}
        echo_stats(data, as_json)

    @agents.command()
    @click.argument("name")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @pass_app
    def delete(app: AppContext, name: str, yes: bool) -> None:
        """Delete agent NAME and everything it remembers (`memory export` first to keep a copy)."""
        from ..memory.store import AgentStore

        with agent_lock(app, name):
            confirm_or_abort(f"delete agent {name!r} and all its memory?", yes)
            AgentStore.delete(app.paths, app.settings, name)
        click.echo(f"deleted agent {name}")

    @agents.command()
    @click.argument("old")
    @click.argument("new")
    @pass_app
    def rename(app: AppContext, old: str, new: str) -> None:
        """Rename agent OLD to NEW (its memory moves with it)."""
        from ..memory.store import AgentStore, check_agent_name

        check_agent_name(new)
        with agent_lock(app, old):
            AgentStore.rename(app.paths, app.settings, old, new)
        click.echo(f"renamed agent {old} to {new}")
