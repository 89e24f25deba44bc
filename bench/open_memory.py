"""Open memory: does the persona keep and bring back facts of kinds nobody wrote a rule for?

Data: bench/data/open_memory ({dev,test}.json: 44 fact kinds split in two, three values, three
statement phrasings and two questions each, ja and en, plus trap sentences). The test split was
frozen before any capture rule was changed: tune on dev, report test.

Three measurements per split and language:
- retrieval: each question against all the split's statements and small talk, by meaning (the
  ranking a question's nearest passages get in surfacing): R@1, R@3.
- capture: every phrasing of every fact and every trap through the agent's capture alone (no reply),
  each turn undone after it. kept = a memory with that message as its source holds the value;
  typed = filed under a fact kind; misfiled = a typed fact of a kind the statement is not about, or
  a value that is not the stated one; a trap fails when it stores what it must not.
- chat: a generated three-session chat (facts stated among traps, small talk until they leave the
  window, questions after a restart) on the embedded model. answered = the reply holds the value;
  good = answered, not junk, and more than the bare value.

`python -m bench.open_memory --split test --langs ja,en --models 0.5b --what capture,chat`
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any

from bench import memory_e2e

DATA = Path(__file__).resolve().parent / "data" / "open_memory"
# The listed kinds (facts.toml keys) a statement of each open kind may be filed under; anything else
# typed from it is misfiled ("I drink black coffee" is a drink, not a food; a hometown is not home).
FILED_AS: dict[str, set[str]] = {
    "name": {"name"}, "job": {"job"}, "birthday": {"birthday"}, "workplace": {"job"},
    "sibling": {"family"}, "daughter": {"family"}, "partner": {"family"}, "bird": {"pet_name"},
    "sport": {"hobby"}, "instrument": {"hobby"}, "collection": {"hobby"}, "game": {"hobby"},
    "plant": {"hobby"}, "morning": {"hobby"}, "coffee": {"favorite_drink"},
    "fruit": {"favorite_food"}, "sweets": {"favorite_food"},
}
NOT_A_FACT = ("note", "promise")
PERSONAS = {"ja": "sakura", "en": "sam"}


def load(split: str) -> dict[str, Any]:
    return json.loads((DATA / f"{split}.json").read_text(encoding="utf-8"))


def folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def holds(text: str, value: str) -> bool:
    return folded(value) in folded(text)


def typed_ok(fact_kind: str, fact_value: str, open_kind: str, value: str) -> bool:
    """A typed fact from a statement is right when its kind fits the statement's and its value is the
    stated value (a few characters of slack for an article or a particle, never another word)."""
    value_ok = holds(fact_value, value) and len(folded(fact_value)) <= len(folded(value)) + 4
    return fact_kind in FILED_AS.get(open_kind, set()) and value_ok


def bare_value(reply: str, value: str) -> bool:
    """A reply that is the value and little else (「ミケ」, "Mike!")."""
    rest = folded(reply).replace(folded(value), "")
    return len([c for c in rest if c.isalnum()]) < 4


# --- capture alone ------------------------------------------------------------------------------
def capture_run(split: str, language: str, model_path: Path, context_length: int = 2048) -> dict[str, Any]:
    from memagent.config import load_settings
    from memagent.memory.kinds import MessageKind
    from memagent.paths import resolve_paths
    from memagent.runtime import AgentSession
    from memagent.turns import undo_turn

    data = load(split)
    home = Path(tempfile.mkdtemp(prefix="memagent-open-"))
    paths = resolve_paths(home)
    settings = load_settings(paths, environ={}, overrides={
        "llm": {"model_path": str(model_path), "context_length": context_length, "backend": "embedded"},
        "memory": {"mode": "assisted"}, "agent": {"language": language, "persona": PERSONAS[language]}})
    records: list[dict[str, Any]] = []
    with AgentSession(paths, settings, "bench", progress=False) as session:
        agent = session.agent()
        assert agent.capturer is not None
        store = session.store

        def through_capture(text: str) -> tuple[list[Any], float]:
            turn_id = store.recall.last_turn_id() + 1
            with store.transaction():
                message = store.recall.add("user", text, kind=MessageKind.USER, turn_id=turn_id)
            started = time.perf_counter()
            agent.capturer.capture(message)  # type: ignore[union-attr]
            seconds = time.perf_counter() - started
            facts = store.facts.of_turn(turn_id)
            undo_turn(store, turn_id, keep_user_message=False)
            return facts, seconds

        for kind in data["kinds"]:
            own = kind[language]
            for index, template in enumerate(own["say"]):
                value = own["values"][index % len(own["values"])]
                text = template.replace("{v}", value)
                facts, seconds = through_capture(text)
                typed = [f for f in facts if f.kind not in NOT_A_FACT]
                records.append({
                    "kind": kind["key"], "say": text, "value": value, "seconds": round(seconds, 2),
                    "kept": any(holds(f.value, value) or holds(f.line, value) for f in facts),
                    "typed": [f"{f.kind}={f.value}" for f in typed],
                    "misfiled": [f"{f.kind}={f.value}" for f in typed if not typed_ok(f.kind, f.value, kind["key"], value)],
                    "stored": [f.line for f in facts],
                })
                print(f"  {text[:40]} → {[f.line for f in facts]}", file=sys.stderr, flush=True)
        for trap in data["traps"][language]:
            facts, seconds = through_capture(trap["say"])
            typed = [f for f in facts if f.kind not in NOT_A_FACT]
            allowed = trap["allow"]
            wrong = [f for f in (facts if trap["store"] == "nothing" else typed)
                     if not any(f.kind == k and folded(f.value) in map(folded, vs) for k, vs in allowed.items())]
            records.append({"trap": trap["store"], "say": trap["say"], "seconds": round(seconds, 2),
                            "stored": [f"{f.kind}={f.value}" for f in facts], "violations": [f"{f.kind}={f.value}" for f in wrong]})
            print(f"  trap {trap['say'][:40]} → {[f'{f.kind}={f.value}' for f in facts]}", file=sys.stderr, flush=True)
    statements = [r for r in records if "kind" in r]
    traps = [r for r in records if "trap" in r]
    return {"records": records, "scores": {
        "statements": len(statements),
        "kept": sum(r["kept"] for r in statements),
        "typed": sum(bool(r["typed"]) for r in statements),
        "misfiled": sum(bool(r["misfiled"]) for r in statements),
        "traps": len(traps),
        "trap_violations": sum(bool(r["violations"]) for r in traps),
        "capture_s_mean": round(statistics.mean(r["seconds"] for r in records), 2),
    }}


# --- retrieval alone ----------------------------------------------------------------------------
def retrieval_run(split: str, language: str, plain: bool = True) -> dict[str, Any]:
    """Each question against every statement of the split (one phrasing per kind, in turn) and the
    small talk, through the archival search surfacing uses: R@1 and R@3 of the answering statement,
    by meaning (the ranking a question's nearest passages get in surfacing, which embeds a question
    by its plain words; `plain` False: as typed)."""
    import numpy as np

    from memagent.config import load_settings
    from memagent.memory.embeddings import make_embedder
    from memagent.paths import resolve_paths
    from memagent.sentences import plain_words

    data = load(split)
    small_talk = json.loads((DATA / "smalltalk.json").read_text(encoding="utf-8"))[language]
    embedder = make_embedder(load_settings(resolve_paths(Path(tempfile.mkdtemp())), environ={}))
    found = {"dense_r1": 0, "dense_r3": 0, "questions": 0}
    for phrasing in range(3):
        statements = [kind[language]["say"][phrasing].replace("{v}", kind[language]["values"][phrasing])
                      for kind in data["kinds"]]
        vectors = embedder.embed_passages(statements + small_talk)
        for index, kind in enumerate(data["kinds"]):
            for question in kind[language]["ask"]:
                order = list(np.argsort(-(vectors @ embedder.embed_query(plain_words(question) if plain else question))))
                rank = order.index(index)
                found["dense_r1"] += rank == 0
                found["dense_r3"] += rank < 3
                found["questions"] += 1
    n = found["questions"]
    return {"scores": {"questions": n, "candidates": len(data["kinds"]) + len(small_talk),
                       "R@1": round(found["dense_r1"] / n, 3), "R@3": round(found["dense_r3"] / n, 3)}}


# --- a generated chat ---------------------------------------------------------------------------
def generate_chat(split: str, language: str, seed: int, facts: int = 8, traps: int = 3) -> dict[str, Any]:
    """A three-session script in bench.memory_e2e's format: `facts` statements of distinct kinds among
    `traps` trap sentences; small talk until they leave the window; after a restart, one question each."""
    rng = random.Random(f"{split}/{language}/{seed}")
    data = load(split)
    chosen = rng.sample(data["kinds"], facts)
    truth: dict[str, list[str]] = {}
    stated: list[dict[str, Any]] = []
    asked: list[dict[str, Any]] = []
    for kind in chosen:
        own = kind[language]
        value = rng.choice(own["values"])
        truth[kind["key"]] = [value]
        stated.append({"say": rng.choice(own["say"]).replace("{v}", value), "states": {kind["key"]: value}})
        asked.append({"say": rng.choice(own["ask"]), "asks": kind["key"]})
    trap_turns = [{"say": t["say"], "trap": t} for t in rng.sample(data["traps"][language], traps)]
    first = stated + trap_turns
    rng.shuffle(first)
    small_talk = json.loads((DATA / "smalltalk.json").read_text(encoding="utf-8"))[language]
    rng.shuffle(asked)
    return {"language": language, "persona": PERSONAS[language], "facts": truth, "changed": {},
            "sessions": [first, [{"say": line} for line in small_talk], asked]}


def chat_score(script: dict[str, Any], turns: list[dict[str, Any]], facts: list[Any], sources: dict[int, str],
               writes: int) -> dict[str, Any]:
    truth: dict[str, list[str]] = script["facts"]
    by_message = {}
    for turn_facts in facts:
        by_message.setdefault(turn_facts.message_id, []).append(turn_facts)
    current = [f for f in facts if f.superseded_by is None]
    kept = [kind for kind, values in truth.items()
            if any(holds(f.value, values[0]) or holds(f.line, values[0]) for f in current
                   if f.message_id in sources and holds(sources[f.message_id], values[0]))]
    misfiled = []
    stating = {turn["say"]: next(iter(turn["states"].items())) for turn in turns if turn.get("states")}
    for f in facts:
        if f.kind in NOT_A_FACT:
            continue
        source = sources.get(f.message_id or -1, "")
        if source in stating:
            kind, value = stating[source]
            if not typed_ok(f.kind, f.value, kind, value):
                misfiled.append(f"{f.kind}={f.value}")
        elif not any(turn.get("trap") and turn["say"] == source and f.kind in turn["trap"]["allow"]
                     for session in script["sessions"] for turn in session):  # the script's turns hold the traps
            misfiled.append(f"{f.kind}={f.value} ← {source}")
    invented = [f"{f.kind}={f.value}" for f in facts
                if f.kind not in NOT_A_FACT and not holds(sources.get(f.message_id or -1, ""), f.value)]
    questions = [t for t in turns if t.get("asks")]
    replied = [t for t in turns if t["reply"] is not None]

    def answered(turn: dict[str, Any]) -> bool:
        return holds(turn["reply"] or "", truth[turn["asks"]][0])

    def good(turn: dict[str, Any]) -> bool:
        return answered(turn) and not turn["junk"] and not bare_value(turn["reply"], truth[turn["asks"]][0])

    out = [t for t in questions if not t["in_view"]]
    return {
        "facts_stated": len(truth), "facts_kept": len(kept),
        "questions_out_of_view": len(out), "answered_out_of_view": sum(map(answered, out)),
        "good_out_of_view": sum(map(good, out)),
        "bare_answers": sum(1 for t in questions if answered(t) and bare_value(t["reply"], truth[t["asks"]][0])),
        "invented": invented, "misfiled": misfiled,
        "junk_replies": sum(1 for t in replied if t["junk"]), "no_reply_turns": len(turns) - len(replied),
        "turns": len(turns), "agent_memory_writes": writes,
        "reply_s_mean": round(statistics.mean(t["reply_s"] for t in turns), 2),
        "capture_s_mean": round(statistics.mean(t["capture_s"] for t in turns), 2),
    }


def run(split: str, models: list[str], languages: list[str], what: str = "retrieval,capture,chat",
        modes: tuple[str, ...] = ("assisted",), seed: int = 1, facts: int = 8,
        agent: dict[str, str] | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for model in models:
        path = memory_e2e.model_file(model)
        for language in languages:
            if "retrieval" in what and model == models[0]:
                key = f"retrieval/{split}/{language}"
                results[key] = retrieval_run(split, language)
                print(key, json.dumps(results[key]["scores"]), file=sys.stderr, flush=True)
            if "capture" in what:
                key = f"capture/{split}/{model}/{language}"
                print(f"… {key}", file=sys.stderr, flush=True)
                results[key] = capture_run(split, language, path)
                print(key, json.dumps(results[key]["scores"]), file=sys.stderr, flush=True)
            if "chat" in what:
                script = generate_chat(split, language, seed, facts=facts)
                for mode in modes:
                    key = f"chat/{split}/{model}/{language}/{mode}/seed{seed}"
                    print(f"… {key}", file=sys.stderr, flush=True)
                    results[key] = memory_e2e.run_script(script, mode=mode, model_path=path, context_length=2048,
                                                         scorer=chat_score, agent=agent)
                    print(key, json.dumps(results[key]["scores"], ensure_ascii=False), file=sys.stderr, flush=True)
    return results


def table(results: dict[str, Any]) -> str:
    lines = ["| run | kept | typed | misfiled | traps storing | answered after the window (good) | bare | "
             "junk / no reply | s per reply | capture s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, result in results.items():
        s = result["scores"]
        if key.startswith("retrieval/"):
            lines.append(f"| {key} (R@1 / R@3 of {s['questions']} questions among {s['candidates']}) | "
                         f"{s['R@1']} / {s['R@3']} | | | | | | | | |")
        elif key.startswith("capture/"):
            lines.append(f"| {key} | {s['kept']}/{s['statements']} | {s['typed']} | {s['misfiled']} | "
                         f"{s['trap_violations']}/{s['traps']} | | | | | {s['capture_s_mean']} |")
        else:
            lines.append(f"| {key} | {s['facts_kept']}/{s['facts_stated']} | | {len(s['misfiled'])} | | "
                         f"{s['answered_out_of_view']}/{s['questions_out_of_view']} ({s['good_out_of_view']}) | "
                         f"{s['bare_answers']} | {s['junk_replies']} / {s['no_reply_turns']} of {s['turns']} | "
                         f"{s['reply_s_mean']} | {s['capture_s_mean']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--models", default="0.5b", help="comma-separated: 0.5b, 1.5b")
    parser.add_argument("--langs", default="ja,en")
    parser.add_argument("--what", default="retrieval,capture,chat", help="any of retrieval, capture, chat")
    parser.add_argument("--modes", default="assisted", help="memory modes for the chat: " + ", ".join(memory_e2e.MODES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--facts", type=int, default=8, help="facts stated in a generated chat")
    parser.add_argument("--agent", action="append", default=[], metavar="KEY=VALUE",
                        help="an [agent] setting for the chats, e.g. regenerate=resample (repeatable)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    agent = dict(item.split("=", 1) for item in args.agent)
    results = run(args.split, args.models.split(","), args.langs.split(","), args.what, tuple(args.modes.split(",")),
                  args.seed, args.facts, agent)
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
