"""The crash matrix: every named crash point crossed with every fault, on a real disk chain with
real bytes (tests/crash/cells.py). ``make test`` runs a representative slice (cells.SLICE);
``make crashtest`` runs every cell and prints the table (tests/crash/crash_table.py), whose last
line is ``crash matrix: N cells, N passed, N failed``."""

from __future__ import annotations

import os

import pytest
from cells import FAULTS, KNOWN_FAILURES, POINTS, SLICE, Cell, run_cell
from crashkit import record, restore_storage
from worlds import build_world

FULL = os.environ.get("MOVEDISK_CRASH_MATRIX") == "full"
CELLS = [pytest.param(p, f, id=f"{p}-x-{f}", marks=[pytest.mark.xfail(
    strict=True, reason=KNOWN_FAILURES[(p, f)])] if (p, f) in KNOWN_FAILURES else [])
    for p, f in ([(p, f) for p in POINTS for f in FAULTS] if FULL else SLICE)]


@pytest.mark.parametrize(("point", "fault"), CELLS)
def test_cell(point: str, fault: str, crash_cluster, crash_agent, tmp_path) -> None:
    dsn = crash_cluster.new_db()
    restore_storage(crash_agent)
    w = build_world(dsn, crash_agent)
    try:
        result = run_cell(Cell(point, fault), w, crash_cluster, tmp_path)
    finally:
        w.sim.clear_faults()
        w.conn.close()
    record(result)
    crash_cluster.drop_db(dsn)
    assert result["ok"], f"{point} x {fault} (exit {result['exit']}, reached {result['reached']}, " \
        f"stages {result['stages']}):\n{result['error']}"
