"""Print the crash matrix from its JSON lines: one row per crash point, one column per fault,
each cell ``ok`` / ``FAIL`` (``-`` when the point was not reached under that fault: the cell ran
and its invariants were checked, but the process was never at that point); the totals last:

    crash matrix: N cells, N passed, N failed

``python tests/crash/crash_table.py FILE`` exits 1 when a cell failed (or none ran)."""

from __future__ import annotations

import json
import sys
from typing import Any

FAULT_NAMES = {
    "engine_killed": "engine", "agent_killed": "agent", "task_fails": "task",
    "deletion_blocked": "blocked", "dest_delete_fails": "dst-del", "db_crash": "db",
    "conn_dropped": "conn", "copy_corrupted": "corrupt",
}


def render(results: list[dict[str, Any]]) -> list[str]:
    points = list(dict.fromkeys(r["point"] for r in results))
    faults = [f for f in FAULT_NAMES if any(r["fault"] == f for r in results)]
    by = {(r["point"], r["fault"]): r for r in results}
    width = max(len(p) for p in points)
    lines = [" " * width + " " + " ".join(f"{FAULT_NAMES[f]:>8}" for f in faults)]
    for p in points:
        cells = []
        for f in faults:
            r = by.get((p, f))
            if r is None:
                cells.append(f"{'':>8}")
            else:
                mark = "ok" if r["ok"] else "FAIL"
                if r["ok"] and not r["reached"]:
                    mark = "ok-"
                cells.append(f"{mark:>8}")
        lines.append(f"{p:<{width}} " + " ".join(cells))
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        lines.append(f"FAIL {r['point']} x {r['fault']}: {r['error'].splitlines()[0] if r['error'] else ''}")
        for extra in r["error"].splitlines()[1:6]:
            lines.append(f"     {extra}")
    reached = sum(1 for r in results if r["reached"])
    secs = sum(r["seconds"] for r in results)
    lines.append(f"(ok- = the point was not reached under that fault; {reached} of {len(results)} "
                 f"cells crashed at their point; {secs:.1f}s in cells)")
    lines.append(f"crash matrix: {len(results)} cells, {len(results) - len(failed)} passed, "
                 f"{len(failed)} failed")
    return lines


def main(argv: list[str]) -> int:
    results = []
    with open(argv[1]) as f:
        for line in f:
            if line.strip():
                results.append(json.loads(line))
    if not results:
        print("crash matrix: 0 cells, 0 passed, 0 failed")
        return 1
    for line in render(results):
        print(line)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
