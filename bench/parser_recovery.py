"""Parser recovery rate on our corpus of realistic malformed model outputs.

A record counts as recovered when parse_call returns the expected function with every expected
param value, or, for a record whose `expected` is null (prose, empty output), when it returns an
error of the expected kind instead of inventing a call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from memagent.parsing import ParseOutcome, parse_call

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "malformed_corpus.jsonl"


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def parse_record(record: dict[str, Any]) -> ParseOutcome:
    return parse_call(record["raw"], prefill=record.get("prefill", ""))


def is_recovered(record: dict[str, Any], outcome: ParseOutcome) -> bool:
    expected = record["expected"]
    if expected is None:
        return outcome.call is None and outcome.error is not None and outcome.error.kind == record.get("expected_error", "no_json")
    if outcome.call is None or outcome.call.function != expected["function"]:
        return False
    arguments = outcome.call.arguments
    return all(key in arguments and arguments[key] == value for key, value in expected["params"].items())


def run() -> dict[str, Any]:
    corpus = load_corpus()
    recovered = sum(is_recovered(record, parse_record(record)) for record in corpus)
    return {"corpus_size": len(corpus), "recovered": recovered, "rate": recovered / len(corpus) if corpus else 0.0}


if __name__ == "__main__":
    print(json.dumps(run()))
