"""Fixtures of the crash matrix: a cluster of its own (a cell crashes the database with an
immediate shutdown and restarts it, which other tests must not see), durable commits on it
(synchronous_commit on, as an engine database runs), one storage agent, a world per cell.

The results of the cells run go to ``MOVEDISK_CRASH_REPORT`` (JSON lines) when it is set, and
the table of them is printed at the end of the session (tests/crash/crash_table.py)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from agenttools import AgentProcess
from crash_table import render
from crashkit import RESULTS
from movedisk.deploy import deploy
from movedisk.pgserver import ThrowawayCluster
from psycopg import sql
from psycopg.rows import dict_row
from worlds import agent_on_copy, stop_agent

_names = itertools.count()


class CrashCluster:
    """A throwaway cluster that can be crashed (immediate shutdown) and started again."""

    def __init__(self) -> None:
        self.cluster = ThrowawayCluster()
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            # The command line turns synchronous_commit off for speed; a role setting wins over
            # it, so that a commit the engine saw survives an immediate shutdown.
            conn.execute("ALTER ROLE postgres SET synchronous_commit = on")
            conn.execute("CREATE DATABASE crash_template")
        with psycopg.connect(self.cluster.dsn("crash_template"), row_factory=dict_row) as conn:
            deploy(conn)

    @property
    def postmaster_pid(self) -> int:
        return int(self.cluster._pg.child_process.pid)

    def new_db(self) -> str:
        name = f"crash_{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE crash_template STRATEGY FILE_COPY")
                         .format(sql.Identifier(name)))
        return self.cluster.dsn(name)

    def drop_db(self, dsn: str) -> None:
        name = dsn.rsplit("dbname=", 1)[1]
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    def restart_after_crash(self) -> None:
        """Reap the postmaster another process sent SIGQUIT, and start it again (crash recovery
        replays the WAL)."""
        pg = self.cluster._pg
        if pg.child_process is not None:
            pg.child_process.wait(timeout=30)
            pg.child_process = None
        pg.start()

    def alive(self) -> bool:
        return self.cluster._pg.child_process is not None and \
            self.cluster._pg.child_process.poll() is None

    def stop(self) -> None:
        self.cluster.stop()


@pytest.fixture(scope="module")
def crash_cluster() -> Iterator[CrashCluster]:
    c = CrashCluster()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def crash_agent(seeded_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One agent for the cells, on a copy of the seeded storage; each cell restores the
    domains' files (restore_storage) and a cell that kills the agent starts it again."""
    proc = agent_on_copy(seeded_root, tmp_path_factory.mktemp("crash") / "agent")
    proc.seeded = seeded_root  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        stop_agent(proc)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RESULTS and not os.environ.get("MOVEDISK_CRASH_REPORT"):
        for line in render(RESULTS):
            terminalreporter.write_line(line)


__all__ = ["CrashCluster", "Path"]
