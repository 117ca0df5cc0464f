"""Model-based test (hypothesis RuleBasedStateMachine): moves, removals, recoveries, cleanups,
agent faults and engine crashes in random order on a small inventory (a template's disk, a disk
based on it, plain disks), compared after every step with a simple model of where each disk
lives and which leftovers and pending deletions exist, and DESIGN.md's invariants checked after
every step (tests/invariants.py: checksums of every volume included).

Fast paths: one agent and one database per module; each example builds its own small data
center (fresh ids, 4 KiB of data per volume) and leaves it settled, so examples never share
disks; moves run in this process, a crash in a forked child."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from invariants import check, volume_checksums
from psycopg.rows import dict_row

from movedisk import inventory
from movedisk.agent import SimControl, StorageClient
from movedisk.engine import cleanup, crashpoints, recover, remove
from movedisk.engine.move import Engine
from movedisk.engine.store import Store
from movedisk.errors import MovediskError

EXAMPLES = int(os.environ.get("MOVEDISK_MODEL_EXAMPLES", "200"))
STEPS = int(os.environ.get("MOVEDISK_MODEL_STEPS", "3"))
# The examples run as SHARDS tests of EXAMPLES / SHARDS examples each, every shard with its own
# seed (so no two shards run the same examples), so that parallel test workers share them out.
SHARDS = max(1, int(os.environ.get("MOVEDISK_MODEL_SHARDS", "4")))
PER_SHARD = -(-EXAMPLES // SHARDS)

DOMAINS = ["S", "D", "E"]
DISKS = ["t", "a", "b", "c"]  # t: a template's disk; a: based on t; b, c: plain
SPEC: dict[str, Any] = {"data_centers": [{
    "name": "dc",
    "domains": [{"name": n, "capacity": "64M"} for n in DOMAINS],
    "templates": [{"name": "tpl", "domain": "S",
                   "disks": [{"alias": "t", "size": "256K", "data": "4K"}]}],
    "vms": [{"name": "vm", "template": "tpl", "disks": [
        {"alias": "a", "domain": "S", "template_disk": "t", "data": "4K"},
        {"alias": "b", "domain": "S", "size": "256K", "data": "4K"},
        {"alias": "c", "domain": "D", "size": "256K", "data": "4K"}]}],
}]}
# Points where a forked engine process dies in the crash rule.
CRASH_POINTS = ["after_phase1_commit", "after_copy_accepted", "during_copy",
                "after_copy_before_phase3", "inside_phase3_before_commit", "after_phase3_commit",
                "during_source_delete", "after_source_delete_before_rows",
                "inside_end_success_before_commit"]
COUNTS = {"examples": 0, "steps": 0}


@dataclass
class Model:
    """Where each disk lives, as far as the test knows (None while a crashed move is not
    recovered: ``maybe`` then holds where it may be); ``records``: the source domains of its
    ILLEGAL temporary disks (a leftover's, or a failed move's record); ``pending``: domains
    where the deletion of its image group is still owed; the faults armed at the agent."""

    loc: dict[str, str | None] = field(default_factory=dict)
    maybe: dict[str, set[str]] = field(default_factory=dict)
    records: dict[str, set[str]] = field(default_factory=dict)
    pending: dict[str, set[str]] = field(default_factory=dict)
    copy_fault: set[str] = field(default_factory=set)  # the next copy of this disk fails
    delete_fault: dict[str, str] = field(default_factory=dict)  # next deletion on that domain fails

    def template_on(self, sd: str) -> bool:
        return self.loc["t"] == sd or sd in self.pending["t"]

    def blocks_template(self, sd: str) -> bool:
        """A disk based on the template lives on ``sd``: the template's deletion there is refused."""
        return self.loc["a"] == sd or sd in self.maybe.get("a", set())

    def deletion_fails(self, alias: str, sd: str) -> bool:
        """Whether deleting ``alias``'s image group on ``sd`` fails now (and consumes a fault)."""
        if alias == "t" and self.blocks_template(sd):
            return True
        if self.delete_fault.get(alias) == sd:
            del self.delete_fault[alias]
            return True
        return False


class Shared:
    """Built once per test: a database with the inventory (the examples' template) and a copy of
    its domains' files; each example clones the one and restores the other (fast paths)."""

    databases: Any = None
    agent: Any = None
    base = "movedisk_model_base"
    made: Any = None
    expected: dict[str, str] = {}
    snapshot: Path = Path()
    n = 0

    @classmethod
    def prepare(cls, databases: Any, template: str, agent: Any, tmp: Path) -> None:
        cls.databases, cls.agent = databases, agent
        dsn = databases.create(cls.base, template)
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            cls.made = inventory.build(conn, SimControl(agent.socket, timeout=30), SPEC,
                                       salt=uuid.uuid4().hex)
        cls.expected = volume_checksums(agent.root, cls.made.domains.values())
        cls.snapshot = tmp / "domains"
        cls.snapshot.mkdir()
        subprocess.run(["cp", "-a", *[str(agent.root / "domains" / sd)
                                      for sd in cls.made.domains.values()], str(cls.snapshot)],
                       check=True)

    @classmethod
    def fresh(cls) -> tuple[str, str]:
        """A new database cloned from the base, the agent's domains as they were built."""
        cls.n += 1
        name = f"movedisk_model_{os.getpid()}_{cls.n}"
        dsn = cls.databases.create(name, cls.base)
        for sd in cls.made.domains.values():
            shutil.rmtree(cls.agent.root / "domains" / sd)
        subprocess.run(["cp", "-a", *[str(cls.snapshot / sd) for sd in cls.made.domains.values()],
                        str(cls.agent.root / "domains")], check=True)
        return name, dsn


class MoveMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        COUNTS["examples"] += 1
        self.dbname, self.dsn = Shared.fresh()
        self.conn = psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row)
        self.client = StorageClient(Shared.agent.socket, timeout=30)
        self.sim = SimControl(Shared.agent.socket, timeout=30)
        self.made = Shared.made
        self.dom = {n: uuid.UUID(self.made.domains[n]) for n in DOMAINS}
        self.name_of = {v: k for k, v in self.dom.items()}
        self.ids = {a: uuid.UUID(self.made.disks[a]["id"]) for a in DISKS}
        self.expected = Shared.expected
        self.engine = Engine(Store(self.conn), self.client, poll_seconds=0.005,
                             max_poll_seconds=0.05)
        self.m = Model(loc={"t": "S", "a": "S", "b": "S", "c": "D"},
                       records={a: set() for a in DISKS}, pending={a: set() for a in DISKS})
        self.crashed = False

    # --- what the database says --------------------------------------------------------------

    def state(self) -> dict[str, dict[str, set[str]]]:
        """In one query, for every disk: where the database maps it ("on"), the source domains
        of its ILLEGAL temporary disks ("temporary"), its pending deletions ("pending")."""
        out = {a: {"on": set(), "temporary": set(), "pending": set()} for a in DISKS}
        alias_of = {v: k for k, v in self.ids.items()}
        for r in self.conn.execute("""
                SELECT i.image_group_id AS disk, 'on' AS what, m.storage_domain_id AS sd
                FROM images i JOIN image_storage_domain_map m ON m.image_id = i.image_guid
                WHERE i.image_group_id = ANY(%(ids)s)
                UNION SELECT t.src_image_group_id, 'temporary', t.src_storage
                FROM images_to_be_deleted t JOIN images i ON i.image_guid = t.image_id
                WHERE t.src_image_group_id = ANY(%(ids)s) AND i.imagestatus = 4
                UNION SELECT image_group_id, 'pending', storage_domain_id
                FROM image_groups_to_be_deleted WHERE image_group_id = ANY(%(ids)s)""",
                {"ids": list(self.ids.values())}):
            out[alias_of[r["disk"]]][r["what"]].add(self.name_of[r["sd"]])
        return out

    def placement(self, alias: str) -> set[str]:
        return self.state()[alias]["on"]

    def pending(self, alias: str) -> set[str]:
        return self.state()[alias]["pending"]

    def temporaries(self, alias: str) -> list[tuple[uuid.UUID, str]]:
        """(temporary disk, its source domain) of each ILLEGAL temporary disk of ``alias``."""
        return [(r["image_group_id"], self.name_of[r["src_storage"]]) for r in self.conn.execute(
            "SELECT DISTINCT i.image_group_id, t.src_storage FROM images_to_be_deleted t "
            "JOIN images i ON i.image_guid = t.image_id "
            "WHERE t.src_image_group_id = %s AND i.imagestatus = 4", (self.ids[alias],))]

    # --- rules ---------------------------------------------------------------------------------

    @rule(alias=st.sampled_from(DISKS), dest=st.sampled_from(DOMAINS))
    def move(self, alias: str, dest: str) -> None:
        COUNTS["steps"] += 1
        m = self.m
        src = m.loc[alias]
        try:
            outcome = self.engine.run(self.engine.start(self.ids[alias], self.dom[dest])).stage
        except MovediskError as exc:
            outcome = type(exc).__name__
        if src is None:  # a crashed move of it is not recovered yet
            assert outcome == "DiskBusy" or (outcome.startswith("ENDED") and not self.crashed), outcome
            return
        if dest == src:
            expect = "WrongStorageDomain"
        elif dest in m.records[alias] or dest in m.pending[alias]:
            expect = "DiskBusy"
        elif (alias == "a" and not m.template_on(dest)) or alias in m.copy_fault:
            expect = "ENDED_FAILURE"
        elif m.deletion_fails(alias, src):
            expect = "ENDED_WITH_LEFTOVER"
        else:
            expect = "ENDED_SUCCESS"
        assert outcome == expect, (alias, src, dest, outcome, expect, m)
        if outcome == "ENDED_FAILURE":
            m.copy_fault.discard(alias)
            m.records[alias].add(src)  # the failed move's ILLEGAL temporary disk
        elif outcome.startswith("ENDED"):
            m.loc[alias] = dest
            if outcome == "ENDED_WITH_LEFTOVER":
                m.records[alias].add(src)
                m.pending[alias].add(src)

    @rule(alias=st.sampled_from(DISKS))
    def remove_temporary_disks(self, alias: str) -> None:
        COUNTS["steps"] += 1
        if self.m.loc[alias] is None:
            return
        for tmp, src in self.temporaries(alias):
            try:
                plan = remove.remove(self.engine, tmp).plan
            except MovediskError as exc:
                plan = type(exc).__name__
            if src == self.m.loc[alias]:
                expect = "DB_ONLY"  # the data on src is the live disk: only rows go
            elif self.m.deletion_fails(alias, src):
                expect = "DeletionBlocked"
            else:
                expect = "STORAGE_AND_DB"
            assert plan == expect, (alias, src, plan, expect, self.m)
            if plan != "DeletionBlocked":
                self.m.records[alias].discard(src)
                self.m.pending[alias].discard(src)

    @rule()
    def run_cleanup(self) -> None:
        COUNTS["steps"] += 1
        cleanup.run(self.engine, due_only=False)
        for alias in DISKS:
            if self.m.loc[alias] is None:
                continue
            for sd in sorted(self.m.pending[alias]):
                if not self.m.deletion_fails(alias, sd):
                    self.m.pending[alias].discard(sd)
                    self.m.records[alias].discard(sd)

    @rule(alias=st.sampled_from(DISKS), which=st.sampled_from(["copy", "delete"]))
    def agent_fault(self, alias: str, which: str) -> None:
        COUNTS["steps"] += 1
        loc = self.m.loc[alias]
        if loc is None or self.crashed:
            return
        if which == "copy" and alias not in self.m.copy_fault:
            self.sim.add_fault("copy_fail_after", imgUUID=str(self.ids[alias]), bytes=1000)
            self.m.copy_fault.add(alias)
        elif which == "delete" and alias not in self.m.delete_fault:
            self.sim.add_fault("delete_fail", sdUUID=str(self.dom[loc]), imgUUID=str(self.ids[alias]))
            self.m.delete_fault[alias] = loc

    @precondition(lambda self: not self.crashed)
    @rule(alias=st.sampled_from(["b", "c", "t"]), dest=st.sampled_from(DOMAINS),
          point=st.sampled_from(CRASH_POINTS))
    def crash_a_move(self, alias: str, dest: str, point: str) -> None:
        """An engine process dies at ``point`` of a move; the disk's fate is recovery's."""
        COUNTS["steps"] += 1
        m = self.m
        src = m.loc[alias]
        if src is None or src == dest or dest in m.records[alias] or dest in m.pending[alias] \
                or alias in m.copy_fault or alias in m.delete_fault:
            return
        disk, d = self.ids[alias], self.dom[dest]
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.environ[crashpoints.ENV] = point
                conn = psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row)
                eng = Engine(Store(conn), StorageClient(Shared.agent.socket, timeout=30))
                eng.run(eng.start(disk, d))
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        m.maybe[alias] = {src, dest}
        m.loc[alias] = None
        self.crashed = os.WIFSIGNALED(status)
        if not self.crashed:  # the point is not on this move's path (t's deletion refused)
            self.resolve()

    @rule()
    def run_recovery(self) -> None:
        COUNTS["steps"] += 1
        report = recover.recover(self.engine)
        assert not report.errors, report.errors
        self.resolve()
        self.crashed = False

    def resolve(self) -> None:
        """After a crash and recovery: the disk is on one of the two domains, and its records
        and pending deletions are what the end recovery chose left."""
        for alias, maybe in list(self.m.maybe.items()):
            got = self.placement(alias)
            assert len(got) == 1 and got <= maybe, (alias, got, maybe)
            self.m.loc[alias] = got.pop()
            del self.m.maybe[alias]
            state = self.state()[alias]
            self.m.records[alias], self.m.pending[alias] = state["temporary"], state["pending"]

    # --- after every step ----------------------------------------------------------------------

    @invariant()
    def agrees_with_the_model_and_the_invariants(self) -> None:
        state = self.state()
        for alias in DISKS:
            if self.m.loc[alias] is not None:
                assert state[alias] == {"on": {self.m.loc[alias]}, "temporary": self.m.records[alias],
                                        "pending": self.m.pending[alias]}, (alias, state, self.m)
        check(self.conn, Shared.agent.root, self.expected, settled=not self.crashed)

    def teardown(self) -> None:
        try:
            if self.crashed:
                self.run_recovery()
            self.sim.clear_faults()
            check(self.conn, Shared.agent.root, self.expected, settled=True)
        finally:
            self.conn.close()
            Shared.databases.drop(self.dbname)


@pytest.mark.parametrize("shard", range(SHARDS))
def test_model_based_moves_recoveries_and_faults(databases, template_db, agent_proc, tmp_path,
                                                 shard: int) -> None:
    Shared.prepare(databases, template_db, agent_proc, tmp_path)
    t0 = time.perf_counter()
    before = COUNTS["examples"]
    machine = type(f"MoveMachineShard{shard}", (MoveMachine,), {})
    machine._hypothesis_internal_use_seed = 0x6D76 + shard  # type: ignore[attr-defined]
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=PER_SHARD, stateful_step_count=STEPS, deadline=None,
            suppress_health_check=list(HealthCheck), database=None, print_blob=True))
    finally:
        databases.drop(Shared.base)
    ran = COUNTS["examples"] - before
    print(f"\nmodel shard {shard}/{SHARDS}: {ran} examples, {COUNTS['steps']} steps so far, "
          f"{time.perf_counter() - t0:.1f}s")
    # Every shard runs its share: EXAMPLES (at least 200 by default) over all shards.
    assert ran >= PER_SHARD
