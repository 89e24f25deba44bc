"""`memagent db …`: move agents between storages."""

from __future__ import annotations

import click

from ..errors import MemagentError
from .context import AppContext, pass_app
from .memory_cmds import show_progress


def register(cli: click.Group) -> None:
    @cli.group()
    def db() -> None:
        """Move agents from SQLite files into a PostgreSQL database."""

    @db.command()
    @click.option("--to", "target", metavar="URL",
                  help="postgresql://USER:PASSWORD@HOST:PORT/DATABASE (default: [storage] url / MEMAGENT_DATABASE_URL).")
    @click.option("--agent", "names", multiple=True, help="Only this agent (repeatable; default: every agent).")
    @pass_app
    def migrate(app: AppContext, target: str | None, names: tuple[str, ...]) -> None:
        """Copy every agent of the data folder (its SQLite files) into a PostgreSQL database.

        Blocks with their history, messages, passages and facts keep their ids; vectors are embedded
        again there. Safe to run again: copied agents are skipped, an interrupted one is completed,
        and every copy is counted against its source. The SQLite files are left as they were."""
        from ..memory.postgres import is_postgres_url, safe_url
        from ..memory.transfer import Copied, migrate_agents

        url = target or app.settings.storage.database_url
        if not url or not is_postgres_url(url):
            raise MemagentError("say where to: memagent db migrate --to postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
                                "(or set [storage] url)")

        def report(copied: Copied) -> None:
            click.echo(f"{copied.name}: {copied.outcome} — {copied.counts.describe()}")

        done = migrate_agents(app.paths, app.settings, url, names or None, progress=show_progress(), report=report)
        click.echo(f"{len(done)} agent(s) in {safe_url(url)}, each counted against its source. Set [storage] url "
                   "(or MEMAGENT_DATABASE_URL) to use them there.")
