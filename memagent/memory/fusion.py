"""Score fusion for hybrid search: dense (cosine) and lexical (coverage) scores on one scale.

Dense cosines of one model sit in a narrow band (e5: roughly 0.75-0.9), so they are min-max scaled
over the candidates. The lexical score is already absolute, in [0, 1] (the IDF-weighted share of
the query found in the passage), and is used as is: scaling it by the best candidate would lift a
match on one grammatical trigram to full weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

FusionMethod = Literal["minmax", "rrf"]
RRF_K = 60


def _minmax(scores: Mapping[int, float]) -> dict[int, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high == low:
        return {key: 1.0 for key in scores}
    return {key: (value - low) / (high - low) for key, value in scores.items()}


def _reciprocal_ranks(scores: Mapping[int, float]) -> dict[int, float]:
    ranked = sorted((key for key, value in scores.items() if value > 0), key=lambda key: -scores[key])
    return {key: 1.0 / (RRF_K + rank) for rank, key in enumerate(ranked, start=1)}


def fuse(
    dense: Mapping[int, float],
    lexical: Mapping[int, float],
    dense_weight: float,
    method: FusionMethod = "minmax",
) -> list[tuple[int, float]]:
    """(id, fused score) best first. An id missing from either mapping scores 0 there.

    "minmax": dense_weight * minmax(dense) + (1 - dense_weight) * lexical.
    "rrf": the same weights over reciprocal ranks (kept for comparison in the benchmark)."""
    candidates = set(dense) | set(lexical)
    if method == "rrf":
        dense_part, lexical_part = _reciprocal_ranks(dense), _reciprocal_ranks(lexical)
    else:
        dense_part, lexical_part = _minmax(dense), dict(lexical)
    fused = {
        key: dense_weight * dense_part.get(key, 0.0) + (1.0 - dense_weight) * lexical_part.get(key, 0.0)
        for key in candidates
    }
    # Ties (e.g. identical texts) break by the dense score, then by id for determinism.
    return sorted(fused.items(), key=lambda item: (-item[1], -dense.get(item[0], 0.0), item[0]))
