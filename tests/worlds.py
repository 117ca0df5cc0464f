"""A "world" for tests that move disks: a database with an inventory (a data center, three
domains, a template with a disk, two VMs on it, plain disks), a real storage agent holding its
storage, and an Engine over both. The storage is made once per session and copied per test.
Shared by tests/engine, tests/crash and the model, concurrency and bad-input tests (fixtures
``seeded_root``, ``agent_proc`` and ``world`` in tests/conftest.py)."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from agenttools import AgentProcess, running_agent, start_agent, stop_agent  # noqa: F401 (stop_agent re-exported)
from invariants import check, volume_checksums
from psycopg.rows import dict_row

from movedisk import inventory
from movedisk.agent import SimControl, StorageClient
from movedisk.engine.events import Event
from movedisk.engine.move import Engine
from movedisk.engine.store import Store

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


SALT = "engine-tests-"  # fixed: the storage is made once (seeded_root) and copied


def build_world(dsn: str, agent: AgentProcess, spec: dict[str, Any] | None = None,
                salt: str = SALT, storage: bool = False) -> World:
    """The inventory ``spec`` (default SPEC) on the database ``dsn``; on the agent too when
    ``storage`` (else the agent's root is a copy of storage already made with that salt)."""
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    client = StorageClient(agent.socket, timeout=30)
    sim = SimControl(agent.socket, timeout=30)
    sim.clear_faults()
    made = inventory.build(conn, sim if storage else None, spec or SPEC, salt=salt)
    return World(dsn, conn, agent, client, sim, made,
                 volume_checksums(agent.root, made.domains.values()))


def seed_storage(root: Path, dsn: str, spec: dict[str, Any] | None = None, salt: str = SALT) -> Path:
    """Make ``spec``'s storage once under ``root`` with a throwaway agent (the agent makes real
    qcow2 images with qemu-img: seconds per inventory); tests copy it (cp -a keeps hard links and
    holes) and build the database side alone. ``dsn``: a scratch database, left as it was built."""
    with running_agent(root, "mds-", graceful=True) as proc, \
            psycopg.connect(dsn, row_factory=dict_row) as conn:
        inventory.build(conn, SimControl(proc.socket, timeout=60), spec or SPEC, salt=salt)
    for name in ("agent.log", "agent.lock", "agent.sock"):
        (root / name).unlink(missing_ok=True)
    return root


def agent_on_copy(seeded: Path, root: Path) -> AgentProcess:
    """A started agent whose root is a copy of ``seeded``."""
    subprocess.run(["cp", "-a", str(seeded), str(root)], check=True)
    return start_agent(root, "mde-")
