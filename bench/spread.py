"""One figure over its repetitions, as bench.py and serving.py write it to their JSON: the median,
the spread (min and max) and every repetition's value, in the order measured. bench/report.py
renders it as `median (min–max)` and judges targets on the worst repetition."""

from __future__ import annotations

import statistics


def spread(values) -> dict:
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def spread_dict(results: list[dict]) -> dict:
    """Repetitions that each measured several figures (dicts with the same keys): one spread a key."""
    return {key: spread(r[key] for r in results) for key in results[0]}
