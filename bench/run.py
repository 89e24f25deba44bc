"""`make bench`: every figure side by side in one run → a table on stdout and a JSON file.

Sizes are parameters: `python -m bench.run --quick` fits in a few minutes; the defaults are the
sizes the issues ask for (1M messages, 100k passages, 10 turns on the embedded model). The JSON goes
to bench/results.local.json (not tracked) unless `--out` says where: the published figures are
`--out bench/results.json`, from a run of the commit they name.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.local.json"


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores{memory}, {cpu or platform.processor()}, Python {platform.python_version()}"


def timed(name: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    print(f"… {name}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        result = action()
    except Exception as exc:  # one failed measurement must not hide the others
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["bench_seconds"] = round(time.perf_counter() - started, 1)
    return result


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    def get(section: str, *keys: str, fmt: str = "{}") -> str:
        value: Any = r.get(section, {})
        if "error" in value:
            return "error: " + value["error"][:60]
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return fmt.format(value) if value is not None else "—"

    def junk(section: str) -> str:
        """Junk shown (empty, a system note, a copy, a cliché…) scaled to 10 turns; turns that ended
        with the "no usable reply" notice instead; what was regenerated before anything was shown."""
        run: Any = r.get(section)
        if not run or "error" in run:
            return "error: " + run["error"][:60] if run else "— (not run)"
        per_10 = 10 * run["junk_shown"] / max(run["turns"], 1)
        return (f"{per_10:.1f} ({run['junk_shown']} in {run['turns']} turns; {run['no_usable_reply_turns']} turns with "
                f"no usable reply; {run['degenerate_detected']} caught and regenerated; {run['answered']}/{run['turns']} "
                f"answered, {run['seconds_per_turn']:.1f} s/turn)")

    p1, p2, p3, p4 = r["p1_loop"], r["p2_recall"], r["p3_archival"], r["p4_conversation"]
    r.setdefault("serve", {})
    return [
        ("P1 agent overhead per turn, fake instant LLM", f"{p1.get('stored_messages', '?'):,} messages stored",
         f"p50 {get('p1_loop', 'ms_per_turn_p50')} ms · p95 {get('p1_loop', 'ms_per_turn_p95')} ms"),
        ("P2 literal recall search (FTS5 trigram)", f"{p2.get('messages', '?'):,} messages",
         f"p50 {get('p2_recall', 'fts_ms_p50')} ms vs LIKE scan {get('p2_recall', 'like_ms_p50')} ms "
         f"(×{get('p2_recall', 'like_over_fts')})"),
        ("P2 literal recall, mixed queries (1, 2, 3+ chars; ja/en; common/rare)", f"{p2.get('messages', '?'):,} messages",
         f"p50 {get('p2_recall', 'mix_ms_p50')} ms · p95 {get('p2_recall', 'mix_ms_p95')} ms "
         f"(1-2 chars used to scan: {get('p2_recall', 'short_query_scan_ms_p50')} ms)"),
        ("Recall hybrid search (conversation_search, surfacing)",
         f"{r.get('recall_hybrid', {}).get('messages', 0):,} messages",
         f"p50 {get('recall_hybrid', 'search_ms_p50')} ms · p95 {get('recall_hybrid', 'search_ms_p95')} ms "
         f"(without the query embedding {get('recall_hybrid', 'search_without_embedding_ms_p50')} ms)"),
        ("P3 archival hybrid search", f"{p3.get('passages', '?'):,} passages ({p3.get('embedded_for_real', '?'):,} embedded for real)",
         f"p50 {get('p3_archival', 'search_ms_p50')} ms · p95 {get('p3_archival', 'search_ms_p95')} ms "
         f"(query embedding {get('p3_archival', 'query_embedding_ms_p50')} ms)"),
        ("P3 archival hybrid search without the query embedding (cached vector)", f"{p3.get('passages', '?'):,} passages",
         f"p50 {get('p3_archival', 'search_without_embedding_ms_p50')} ms · "
         f"p95 {get('p3_archival', 'search_without_embedding_ms_p95')} ms"),
        ("P3 archival insert throughput", p3.get("embedder", ""), f"{get('p3_archival', 'insert_passages_per_s')} passages/s"),
        ("P4 tokens evaluated ÷ new tokens, embedded model", f"{p4.get('turns', '?')} turns",
         f"{get('p4_conversation', 'eval_to_new_ratio', fmt='{:.2f}')} "
         f"(mean prompt {get('p4_conversation', 'mean_prompt_tokens', fmt='{:.0f}')} tokens, "
         f"{get('p4_conversation', 'evaluated_per_turn', fmt='{:.0f}')} evaluated per turn)"),
        ("P5 cold start to the chat prompt", "pty, real `memagent chat`",
         f"new agent {get('p5_startup', 'new_agent_s', fmt='{:.2f}')} s · "
         f"existing {get('p5_startup', 'existing_agent_median_s', fmt='{:.2f}')} s"),
        ("memagent serve: added latency over an in-process turn", "openai SDK, instant fake model",
         f"p50 +{get('serve', 'added_ms_p50')} ms (in-process {get('serve', 'in_process_ms_p50')} ms) · "
         f"stream first byte {get('serve', 'stream_first_byte_ms_p50')} ms, first piece "
         f"{get('serve', 'stream_first_piece_ms_p50')} ms"),
        ("Parser recovery on the malformed-output corpus", f"{r['parser'].get('corpus_size', '?')} outputs",
         f"{get('parser', 'recovered')}/{get('parser', 'corpus_size')} ({get('parser', 'rate', fmt='{:.1%}')})"),
        ("Junk replies shown per 10 turns, 10-turn Japanese script", "0.5B (embedded default)", junk("p4_conversation")),
        ("Junk replies shown per 10 turns, 10-turn Japanese script", "1.5B", junk("p4_conversation_1_5b")),
        ("Long Japanese conversation in a 2048-token window", "embedded model",
         f"{get('p4_long_conversation', 'answered')}/{get('p4_long_conversation', 'turns')} answered, "
         f"{get('p4_long_conversation', 'summaries')} summaries, {get('p4_long_conversation', 'junk_shown')} junk shown, "
         f"{get('p4_long_conversation', 'stored_user_messages')} user messages stored, "
         f"{get('p4_long_conversation', 'seconds_per_turn', fmt='{:.1f}')} s/turn"),
        ("Japanese retrieval R@1 / R@3 (paraphrased)", f"{r['ja_retrieval'].get('passages', '?')} passages",
         f"dense {get('ja_retrieval', 'paraphrase', 'dense', 'r1')}/{get('ja_retrieval', 'paraphrase', 'dense', 'r3')} · "
         f"lexical {get('ja_retrieval', 'paraphrase', 'lexical', 'r1')}/{get('ja_retrieval', 'paraphrase', 'lexical', 'r3')} · "
         f"hybrid {get('ja_retrieval', 'paraphrase', 'hybrid', 'r1')}/{get('ja_retrieval', 'paraphrase', 'hybrid', 'r3')}"),
        ("Long conversations: recall hit@5 / hit@10 (bench/data/longconv_*)",
         f"{r.get('longconv', {}).get('hybrid', {}).get('all', {}).get('questions', '?')} questions, ja + en",
         f"literal {get('longconv', 'literal', 'all', 'hit@5')}/{get('longconv', 'literal', 'all', 'hit@10')} · "
         f"before {get('longconv', 'hybrid, message alone', 'all', 'hit@5')}/"
         f"{get('longconv', 'hybrid, message alone', 'all', 'hit@10')} · "
         f"now {get('longconv', 'hybrid', 'all', 'hit@5')}/{get('longconv', 'hybrid', 'all', 'hit@10')}"),
    ]


def memory_runs(models: list[str]) -> dict[str, Any]:
    """assisted and agent side by side: Japanese and English on the default model, Japanese on others."""
    from bench import memory_e2e

    results: dict[str, Any] = {}
    for model in models:
        languages = ["ja", "en"] if model == "0.5b" else ["ja"]
        for key, run in memory_e2e.run([model], languages, ["assisted", "agent"]).items():
            results[key] = {"scores": run["scores"]}
    return results


def table(results: dict[str, Any]) -> str:
    lines = [f"memagent bench — commit {results.get('commit', '?')} — {results['machine']} — {results['date']}", "",
             "| measure | size | result |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(results)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    parser.add_argument("--messages", type=int, help="P2 stored messages (default 1,000,000; quick 100,000)")
    parser.add_argument("--loop-messages", type=int, help="P1 stored messages (default 100,000)")
    parser.add_argument("--passages", type=int, help="P3 passages (default 100,000; quick 10,000)")
    parser.add_argument("--embedded", type=int, help="P3 passages embedded for real (default 2,000; quick 500)")
    parser.add_argument("--turns", type=int, help="P4 conversation turns (default 10; quick 5)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS.name}, not tracked)")
    parser.add_argument("--recall-messages", type=int, help="recall hybrid search: stored messages (default 100,000; quick 20,000)")
    parser.add_argument("--memory-models", default="0.5b,1.5b",
                        help="models for the end-to-end memory benchmark (quick: 0.5b, Japanese only; none: skip it)")
    parser.add_argument("--storage", default="sqlite,postgresql",
                        help="storages measured side by side (bench.storage_bench; PostgreSQL: a throwaway server; none: skip)")
    parser.add_argument("--junk-models", default="0.5b,1.5b",
                        help="models the 10-turn script runs on for the junk count (the 0.5B always; quick: only it)")
    args = parser.parse_args(argv)
    quick = args.quick
    from bench import agent_bench, memory_bench, memory_e2e, parser_recovery, serve_bench, startup_bench

    lines = agent_bench.japanese_script()[: args.turns or (5 if quick else 10)]
    results: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "quick": quick,
    }
    results["parser"] = timed("parser recovery", parser_recovery.run)
    results["p5_startup"] = timed("P5 startup", lambda: startup_bench.run(repeats=3 if quick else 5))
    results["p1_loop"] = timed("P1 loop overhead", lambda: agent_bench.loop_overhead(args.loop_messages or 100_000, 20 if quick else 30))
    results["p2_recall"] = timed("P2 recall search",
                                 lambda: memory_bench.recall_search_vs_like(args.messages or (100_000 if quick else 1_000_000)))
    results["p3_archival"] = timed("P3 archival", lambda: memory_bench.archival_latency(
        args.passages or (10_000 if quick else 100_000), embedded=args.embedded or (500 if quick else 2_000)))
    results["recall_hybrid"] = timed("recall hybrid search", lambda: memory_bench.recall_hybrid_latency(
        args.recall_messages or (20_000 if quick else 100_000), embedded=500 if quick else 1_000))
    results["ja_retrieval"] = timed("Japanese retrieval", memory_bench.ja_retrieval)
    results["longconv"] = timed("long conversations", memory_bench.longconv_quality)
    results["serve"] = timed("memagent serve overhead", lambda: serve_bench.run(turns=20 if quick else 50))
    storages = [name for name in args.storage.split(",") if name and name != "none"]
    if storages:
        from bench import serve_load, storage_bench

        results["storage"] = timed("storages side by side", lambda: storage_bench.run(storages, quick))
        if "postgresql" in storages:
            results["serve_load"] = timed("serve workers under load, one killed", lambda: serve_load.measure(
                seconds=30 if quick else 120))
    conversation = timed("P4 conversation (embedded model)", lambda: agent_bench.run_conversation(lines, context_length=4096))
    conversation.pop("transcript", None)
    results["p4_conversation"] = conversation
    if "1.5b" in args.junk_models.split(",") and not quick:
        # The same script on the bigger model: junk replies per 10 turns on both (4/5).
        bigger = timed("P4 conversation (1.5B model)", lambda: agent_bench.run_conversation(
            lines, context_length=4096, model_path=str(memory_e2e.model_file("1.5b"))))
        bigger.pop("transcript", None)
        results["p4_conversation_1_5b"] = bigger
    long_lines = [f"{i + 1}回目: " + line for i, line in enumerate(agent_bench.japanese_script() * 3)][: 15 if quick else 30]
    long_run = timed("P4 long conversation in a 2048 window (embedded model)",
                     lambda: agent_bench.run_conversation(long_lines, context_length=2048))
    long_run.pop("transcript", None)
    results["p4_long_conversation"] = long_run
    memory_models = ["0.5b"] if quick else [name for name in args.memory_models.split(",") if name and name != "none"]
    if memory_models:
        results["memory_e2e"] = timed("memory end to end (embedded models, assisted vs agent)",
                                      lambda: memory_runs(memory_models))
        # Facts of kinds no rule was written from, on the held-out split (bench/data/open_memory).
        from bench import open_memory

        results["open_memory"] = timed("open memory, held-out split", lambda: {
            key: {"scores": run["scores"]}
            for key, run in open_memory.run("test", memory_models, ["ja", "en"], modes=("assisted", "agent")).items()})
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    print(table(results))
    if "error" not in results.get("memory_e2e", {"error": "not run"}):
        print("\n" + memory_e2e.table(results["memory_e2e"]))
    if isinstance(results.get("open_memory"), dict) and "error" not in results["open_memory"]:
        from bench import open_memory

        print("\n" + open_memory.table({k: v for k, v in results["open_memory"].items() if isinstance(v, dict)}))
    if isinstance(results.get("storage"), dict) and "error" not in results["storage"]:
        from bench import storage_bench

        print("\n" + storage_bench.table(results["storage"]))
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
