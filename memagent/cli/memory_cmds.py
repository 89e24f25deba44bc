"""Placeholder: commands are registered here."""

import click


def register(cli: click.Group) -> None:
    return None
