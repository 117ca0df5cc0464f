"""What every benchmark shares: the figure record, statistics, the machine, the output line.

A benchmark script prints, as its LAST line on stdout, one JSON object
``{"bench": name, "figures": [...], "series": {...}, ...}``; progress goes to stderr.
Each figure compares a value with a baseline measured in the same run, on the same
machine (and cluster), interleaved with it: ``ratio = value / baseline``; its goal is a
bound on that ratio (or, for a few absolute goals, on the value itself).
bench/run.py collects the figures into bench/results.json, adding the date, the
machine and the PostgreSQL version to each.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(xs: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of xs."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def figure(
    name: str,
    value: float,
    unit: str,
    baseline: float | None,
    *,
    baseline_what: str,
    goal: tuple[str, float] | None = None,
    goal_on: str = "ratio",
    pairs: list[tuple[float, float]] | None = None,
    rounds: int | None = None,
    group: str = "",
    note: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One figure. ``pairs`` are the interleaved (baseline, value) measurements of each
    round; the spread is the interquartile range of their per-round ratios."""
    ratio = value / baseline if baseline else None
    out: dict[str, Any] = {
        "name": name,
        "group": group,
        "value": round(value, 6),
        "unit": unit,
        "baseline": round(baseline, 6) if baseline is not None else None,
        "baseline_what": baseline_what,
        "ratio": round(ratio, 4) if ratio is not None else None,
        "goal": f"{goal_on} {goal[0]} {goal[1]:g}" if goal else None,
        "met": None,
        "rounds": rounds if rounds is not None else (len(pairs) if pairs else None),
    }
    if goal:
        measured = ratio if goal_on == "ratio" else value
        out["met"] = bool(measured is not None and OPS[goal[0]](measured, goal[1]))
    if pairs:
        rs = [v / b for b, v in pairs if b > 0]
        out["spread"] = {"ratio_p25": round(pct(rs, 0.25), 4),
                         "ratio_median": round(statistics.median(rs), 4),
                         "ratio_p75": round(pct(rs, 0.75), 4)}
    if note:
        out["note"] = note
    if extra:
        out.update(extra)
    return out


def machine() -> dict[str, Any]:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1)}


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_ns(pid: int) -> int:
    """CPU time a process has used so far, in ns (the scheduler's own account)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def emit(bench: str, figures: list[dict[str, Any]], **rest: Any) -> None:
    print(json.dumps({"bench": bench, "figures": figures, **rest}), flush=True)
