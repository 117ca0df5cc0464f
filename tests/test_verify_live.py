"""verify while moves run: the engine moves disks (a slowed copy; a template whose source
deletion its dependent disk refuses) while verify runs again and again; no run may report a finding,
since every state a move passes through is accounted for."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from movedisk import inventory
from movedisk import verify as verify_mod
from movedisk.embedded import EmbeddedAgent
from movedisk.engine.move import Engine
from movedisk.engine.store import Store

SPEC: dict[str, Any] = {"data_centers": [{
    "name": "dc",
    "domains": [{"name": "S", "capacity": "64M"}, {"name": "D", "capacity": "64M"}],
    "templates": [{"name": "tpl", "domain": "S",
                   "disks": [{"alias": "tpl-os", "size": "2M", "data": "512K"}]}],
    "vms": [{"name": "vm1", "template": "tpl", "disks": [
        {"alias": "vm1-os", "domain": "S", "template_disk": "tpl-os", "data": "128K"},
        {"alias": "vm1-data", "domain": "S", "size": "4M", "data": "1M", "snapshots": 2}]}],
}]}


@pytest.fixture(scope="module")
def agent() -> Iterator[EmbeddedAgent]:
    home = Path(tempfile.mkdtemp(prefix="mdv-", dir="/tmp"))
    a = EmbeddedAgent(home)
    a.start()
    try:
        yield a
    finally:
        a.stop()
        shutil.rmtree(home, ignore_errors=True)


def run_verify(dsn: str, root: Path) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        conn.read_only = True
        found = verify_mod.database_findings(conn)
        conn.rollback()
        found += verify_mod.storage_findings(conn, root)
    return [f.to_json() for f in found]


def test_verify_stays_clean_while_moves_run(
    new_db: Callable[..., str], agent: EmbeddedAgent
) -> None:
    dsn = new_db()
    sim, client = agent.sim(), agent.client()
    sim.clear_faults()
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        made = inventory.build(conn, sim, SPEC, salt=uuid.uuid4().hex)
    disks = {a: uuid.UUID(d["id"]) for a, d in made.disks.items()}
    dest = uuid.UUID(made.domains["D"])
    assert run_verify(dsn, agent.root) == []
    # ~2 MiB/s: the copies take a second or two, long enough for many verify runs mid-copy
    sim.add_fault("copy_delay", count=0, bytes_per_second=2 << 20)
    outcome: dict[str, Any] = {}

    def mover() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
                engine = Engine(Store(conn), client)
                for alias in ("vm1-data", "tpl-os"):
                    outcome[alias] = engine.run(engine.start(disks[alias], dest)).stage
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=mover)
    thread.start()
    runs, findings = 0, []
    try:
        while thread.is_alive():
            findings += run_verify(dsn, agent.root)
            runs += 1
            time.sleep(0.01)
    finally:
        thread.join(timeout=120)
        sim.clear_faults()
    assert "error" not in outcome, outcome
    assert findings == []
    assert runs >= 5, runs  # verify really ran during the moves
    # vm1-os on S still depends on the template's volume: its deletion there is refused, the
    # template's copy on S stays as a recorded leftover
    assert outcome == {"vm1-data": "ENDED_SUCCESS", "tpl-os": "ENDED_WITH_LEFTOVER"}
    assert run_verify(dsn, agent.root) == []
