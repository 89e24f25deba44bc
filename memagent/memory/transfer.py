"""Copying agents from SQLite files into a PostgreSQL database (`memagent db migrate`).

Each agent goes through its export (the same records `memory export` writes: blocks with their
history, messages, passages, facts with their sources), restored into a new agent of the same name;
vectors are embedded again there. Resumable: an agent already copied (same counts) is skipped, one
whose copy was interrupted (created, still empty) is filled, and every copy is counted again."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import SecretStr

from ..config import Settings, StorageSettings
from ..errors import MemagentError
from ..paths import Paths
from .backup import ExportFile, export_data, parse_export, restore
from .store import AgentStore


@dataclass(frozen=True)
class Counts:
    blocks: int
    edits: int
    messages: int
    passages: int
    facts: int

    @classmethod
    def of_export(cls, export: ExportFile) -> Counts:
        return cls(len(export.blocks), sum(len(b.history) for b in export.blocks), len(export.messages),
                   len(export.passages), len(export.facts))

    @classmethod
    def of_store(cls, store: AgentStore) -> Counts:
        return cls.of_export(parse_export(export_data(store.db), store.db.where))

    def describe(self) -> str:
        return (f"{self.messages} messages, {self.passages} passages, {self.facts} facts, "
                f"{self.blocks} blocks ({self.edits} edits)")


@dataclass(frozen=True)
class Copied:
    name: str
    counts: Counts
    outcome: str  # "copied", "already there", "completed"


def with_storage(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"storage": StorageSettings(url=SecretStr(url))})


def migrate_agents(paths: Paths, settings: Settings, target_url: str, names: Iterable[str] | None = None,
                   progress: bool = False, report: Callable[[Copied], None] = lambda _: None) -> list[Copied]:
    """Copy the SQLite agents of `paths` (all, or `names`) into the database at `target_url`."""
    from ..runtime import agent_lock

    source = with_storage(settings, "")
    target = with_storage(settings, target_url)
    available = AgentStore.list_agents(paths, source)
    chosen = list(names) if names else available
    for name in chosen:
        if name not in available:
            raise MemagentError(f"no agent named {name!r} in {paths.agents_dir}; `memagent agents list` (without "
                                "[storage] url) shows them")
    done: list[Copied] = []
    for name in chosen:
        lock = agent_lock(paths, source, name)  # no chat writes to it while it is copied
        lock.acquire()
        try:
            with AgentStore.open(paths, source, name) as store:
                export = parse_export(export_data(store.db), store.db.where)
            copied = _copy(paths, target, name, export, progress)
        finally:
            lock.release()
        report(copied)
        done.append(copied)
    return done


def _copy(paths: Paths, target: Settings, name: str, export: ExportFile, progress: bool) -> Copied:
    wanted = Counts.of_export(export)
    outcome = "copied"
    if AgentStore.exists(paths, target, name):
        with AgentStore.open(paths, target, name) as existing:
            there = Counts.of_store(existing)
        if there == wanted:
            return Copied(name, there, "already there")
        if there.messages or there.passages:
            raise MemagentError(f"agent {name!r} already exists in the database with other memory ({there.describe()}; "
                                f"here: {wanted.describe()}); rename one of them (memagent agents rename) and run again")
        outcome = "completed"  # created by an interrupted run, nothing restored yet
        store = AgentStore.open(paths, target, name)
    else:
        blocks = {block.label: block.value for block in export.blocks}
        store = AgentStore.create(paths, target, name, persona=blocks.get("persona", ""), human=blocks.get("human", ""),
                                  language=export.agent.language)
    with store:
        store.archival.progress = progress

        def embed() -> None:  # before the agent is closed: a background indexer would be stopped by it
            store.archival.refresh_index(progress)
            store.recall.refresh_index(progress)
            if store.recall.vectors is not None:
                store.recall.vectors.wait()

        restore(store.db, export, name, after_commit=embed)
        copied = Counts.of_store(store)
    if copied != wanted:
        raise MemagentError(f"agent {name!r} was copied incompletely ({copied.describe()}, expected "
                            f"{wanted.describe()}); run the migration again")
    return Copied(name, copied, outcome)
