"""The `memagent` command line. Each command group lives in its own module."""

from __future__ import annotations

import sys

import click

from ..errors import MemagentError
from .context import AppContext, pass_app


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), envvar="MEMAGENT_HOME",
              help="Folder for config, agent data, caches and your overrides (default: $MEMAGENT_HOME or the platform's user dirs).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file to use instead of <home>/config.ini.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details to stderr.")
@click.version_option(package_name="memagent")
@click.pass_context
def cli(ctx: click.Context, home: str | None, config_path: str | None, verbose: bool) -> None:
    """memagent — a persistent-memory character chat agent for local LLMs."""
    ctx.obj = AppContext(home=home, config_path=config_path, verbose=verbose)


def _register() -> None:
    """Every command, built-in or from a plugin, comes through the `register_commands` hook. Adding a
    command again replaces it, so calling this twice is harmless."""
    from ..plugins import plugin_manager

    for impl in plugin_manager().hook.register_commands.get_hookimpls():  # registration order: built-ins first
        impl.function(cli=cli)


def _command_name(args: list[str]) -> str | None:
    """The subcommand in `args` (skipping the group's own options)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--home", "--config"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: list[str] | None = None) -> None:
    if _command_name(sys.argv[1:] if argv is None else argv) == "chat":
        from .typeahead import hold_keys

        hold_keys()  # before anything slow: keys typed from now on are kept as typed
    _register()
    try:
        cli.main(args=argv, prog_name="memagent", standalone_mode=False)
    except MemagentError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


__all__ = ["cli", "main", "pass_app"]
