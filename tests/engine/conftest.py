"""Fixtures of the engine tests: a real agent and a fresh database per test, the inventory on
both (the storage made once and copied), an Engine over them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agenttools import AgentProcess  # noqa: E402
from invariants import check, volume_checksums  # noqa: E402

from movedisk import inventory  # noqa: E402
from movedisk.agent import SimControl, StorageClient  # noqa: E402
from movedisk.engine.events import Event  # noqa: E402
from movedisk.engine.move import Engine  # noqa: E402
from movedisk.engine.store import Store  # noqa: E402

# A data center with three domains, a template with a disk, two VMs on it, and plain disks.
SPEC: dict[str, Any] = {"data_centers": [{
    "name": "dc",
    "domains": [{"name": "S", "capacity": "256M"}, {"name": "D", "capacity": "256M"},
                {"name": "E", "capacity": "256M"}],
    "templates": [{"name": "tpl", "domain": "S",
                   "disks": [{"alias": "tpl-os", "size": "4M", "data": "1M"}]}],
    "vms": [
        {"name": "vm1", "template": "tpl", "disks": [
            {"alias": "vm1-os", "domain": "S", "template_disk": "tpl-os", "data": "256K",
             "snapshots": 1},
            {"alias": "vm1-data", "domain": "S", "size": "4M", "data": "1M", "snapshots": 2,
             "wipe_after_delete": True}]},
        {"name": "vm2", "template": "tpl", "disks": [
            {"alias": "vm2-os", "domain": "S", "template_disk": "tpl-os", "data": "256K"}]},
    ],
}]}


SALT = "engine-tests-"


@pytest.fixture(scope="session")
def seeded_root(tmp_path_factory: pytest.TempPathFactory, databases: Any,
                template_db: str) -> Path:
    """An agent root holding SPEC's storage, made once (the agent makes real qcow2 images
    with qemu-img, seconds per inventory): each test starts its own agent on a copy."""
    root = tmp_path_factory.mktemp("seeded-agent")
    sockdir = tempfile.mkdtemp(prefix="mds-", dir="/tmp")
    proc = AgentProcess(root, os.path.join(sockdir, "agent.sock"))
    proc.start()
    dsn = databases.create("movedisk_engine_seed", template_db)
    try:
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            inventory.build(conn, SimControl(proc.socket, timeout=60), SPEC, salt=SALT)
    finally:
        proc.stop()
        databases.drop("movedisk_engine_seed")
        shutil.rmtree(sockdir, ignore_errors=True)
    for name in ("agent.log", "agent.lock", "agent.sock"):
        (root / name).unlink(missing_ok=True)
    return root


@pytest.fixture
def agent_proc(seeded_root: Path, tmp_path: Path) -> Iterator[AgentProcess]:
    """A real agent of this test alone, on a copy of the seeded storage (hard links and holes
    kept, as cp -a does)."""
    root = tmp_path / "agent"
    subprocess.run(["cp", "-a", str(seeded_root), str(root)], check=True)
    sockdir = tempfile.mkdtemp(prefix="mde-", dir="/tmp")
    proc = AgentProcess(root, os.path.join(sockdir, "agent.sock"))
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()
        shutil.rmtree(sockdir, ignore_errors=True)


@dataclass
class World:
    dsn: str
    conn: psycopg.Connection[Any]
    agent: AgentProcess
    client: StorageClient
    sim: SimControl
    made: inventory.Made
    expected: dict[str, str]
    events: list[Event] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.agent.root

    def disk(self, alias: str) -> uuid.UUID:
        return uuid.UUID(self.made.disks[alias]["id"])

    def domain(self, name: str) -> uuid.UUID:
        return uuid.UUID(self.made.domains[name])

    def engine(self, **kw: Any) -> Engine:
        conn = psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row)
        return Engine(Store(conn), self.client, on_event=self.events.append, **kw)

    def rows(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        return self.conn.execute(query, params).fetchall()

    def check(self, settled: bool = True) -> None:
        check(self.conn, self.root, self.expected, settled=settled)

    def cli_env(self) -> dict[str, str]:
        return {"MOVEDISK_DSN": self.dsn, "MOVEDISK_AGENT_SOCKET": self.agent.socket}


@pytest.fixture
def world(new_db: Callable[..., str], agent_proc: AgentProcess) -> Iterator[World]:
    dsn = new_db()
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    client = StorageClient(agent_proc.socket, timeout=30)
    sim = SimControl(agent_proc.socket, timeout=30)
    made = inventory.build(conn, None, SPEC, salt=SALT)  # the storage is the seeded copy
    w = World(dsn, conn, agent_proc, client, sim, made, volume_checksums(agent_proc.root))
    try:
        yield w
    finally:
        conn.close()
