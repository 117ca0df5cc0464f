"""Fixtures: one throwaway cluster per session, a deployed template, per-test databases.

- ``db``: a connection to the shared test database inside a transaction that is
  rolled back after the test (most tests).
- ``new_db``: a factory of databases cloned from the deployed template (or empty),
  for tests that must commit; each is dropped at the end of the test.
- ``seeded_root`` (the inventory's storage, made once), ``agent_proc`` (a real storage agent
  of the test alone, on a copy of it) and ``world``: a fresh database with the inventory, the
  agent, an Engine over both (tests/worlds.py).
- ``replicated_cluster``: a factory of throwaway primary + streaming standby pairs
  (``replicated_cluster(synchronous=False)``), each with the package deployed in its
  database ``movedisk`` and replayed on the standby; stopped after the test.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent / "agent"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agenttools import AgentProcess  # noqa: E402
from worlds import World, agent_on_copy, build_world, seed_storage, stop_agent  # noqa: E402

from movedisk.deploy import deploy  # noqa: E402
from movedisk.pgserver import ReplicatedCluster, ThrowawayCluster  # noqa: E402

TEMPLATE = "movedisk_template"
SHARED = "movedisk_test"
_counter = itertools.count()
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[ThrowawayCluster]:
    cluster = ThrowawayCluster()
    TIMINGS["cluster_start_s"] = cluster.startup_seconds
    try:
        yield cluster
    finally:
        cluster.stop()


def admin(cluster: ThrowawayCluster) -> psycopg.Connection[Any]:
    return psycopg.connect(cluster.dsn("postgres"), autocommit=True)


def create_database(cluster: ThrowawayCluster, name: str, template: str | None = None) -> str:
    with admin(cluster) as conn:
        if template:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return cluster.dsn(name)


def drop_database(cluster: ThrowawayCluster, name: str) -> None:
    with admin(cluster) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def databases(pg_cluster: ThrowawayCluster) -> Any:
    """``databases.create(name, template=None)`` / ``databases.drop(name)`` for wider scopes."""

    class Databases:
        @staticmethod
        def create(name: str, template: str | None = None) -> str:
            return create_database(pg_cluster, name, template)

        @staticmethod
        def drop(name: str) -> None:
            drop_database(pg_cluster, name)

    return Databases()


@pytest.fixture(scope="session")
def template_db(pg_cluster: ThrowawayCluster) -> str:
    dsn = create_database(pg_cluster, TEMPLATE)
    t0 = time.perf_counter()
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        deploy(conn)
    TIMINGS["template_deploy_s"] = time.perf_counter() - t0
    return TEMPLATE


@pytest.fixture(scope="session")
def shared_dsn(pg_cluster: ThrowawayCluster, template_db: str) -> str:
    return create_database(pg_cluster, SHARED, template_db)


@pytest.fixture
def db(shared_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection inside a transaction that is rolled back after the test."""
    conn = psycopg.connect(shared_dsn, row_factory=dict_row)
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


RELEASE_1 = Path(__file__).resolve().parent / "fixtures" / "release_1.sql"


@pytest.fixture
def release_1_dsn(new_db: Callable[..., str], pg_cluster: ThrowawayCluster) -> str:
    """A database of the first release (tests/fixtures/release_1.sql: schema and rows)."""
    dsn = new_db(deployed=False)
    subprocess.run(
        [str(pg_cluster.binaries.program("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1",
         "-f", str(RELEASE_1), "-d", dsn],
        check=True, capture_output=True, text=True,
    )
    return dsn


@pytest.fixture
def new_db(pg_cluster: ThrowawayCluster, template_db: str) -> Iterator[Callable[..., str]]:
    """``new_db(deployed=True)`` -> the DSN of a fresh database, dropped after the test."""
    made: list[str] = []

    def make(deployed: bool = True) -> str:
        name = f"movedisk_t{next(_counter)}"
        t0 = time.perf_counter()
        dsn = create_database(pg_cluster, name, template_db if deployed else None)
        TIMINGS.setdefault("clone_s", []).append(time.perf_counter() - t0)  # type: ignore[attr-defined]
        made.append(name)
        return dsn

    yield make
    for name in made:
        drop_database(pg_cluster, name)


REPLICATED_DB = "movedisk"


@pytest.fixture(scope="session")
def replicated_template() -> Iterator[Path]:
    """A stopped primary's data directory with REPLICATED_DB deployed, copied for every pair."""

    def setup(dsn: Callable[[str], str]) -> None:
        with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(REPLICATED_DB)))
        with psycopg.connect(dsn(REPLICATED_DB), row_factory=dict_row) as conn:
            deploy(conn)

    datadir = ReplicatedCluster.make_template(setup)
    try:
        yield datadir
    finally:
        shutil.rmtree(datadir.parent, ignore_errors=True)


@pytest.fixture
def replicated_cluster(replicated_template: Path) -> Iterator[Callable[..., ReplicatedCluster]]:
    """``replicated_cluster(synchronous=False)`` -> a primary and its streaming standby, with
    the package deployed in REPLICATED_DB (copied from a template: no initdb, no deploy).

    ``cluster.dsn(REPLICATED_DB)`` names both servers with target_session_attrs=read-write.
    """
    made: list[ReplicatedCluster] = []

    def make(synchronous: bool = False) -> ReplicatedCluster:
        cluster = ReplicatedCluster(synchronous=synchronous, template=replicated_template)
        made.append(cluster)
        TIMINGS.setdefault("replicated_start_s", []).append(cluster.startup_seconds)  # type: ignore[attr-defined]
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


@pytest.fixture(scope="session")
def seeded_root(tmp_path_factory: pytest.TempPathFactory, databases: Any,
                template_db: str) -> Path:
    """An agent root holding the inventory's storage (tests/worlds.py SPEC), made once."""
    dsn = databases.create("movedisk_engine_seed", template_db)
    try:
        return seed_storage(tmp_path_factory.mktemp("seeded-agent"), dsn)
    finally:
        databases.drop("movedisk_engine_seed")


@pytest.fixture
def agent_proc(seeded_root: Path, tmp_path: Path) -> Iterator[AgentProcess]:
    """A real agent of this test alone, on a copy of the seeded storage."""
    proc = agent_on_copy(seeded_root, tmp_path / "agent")
    try:
        yield proc
    finally:
        stop_agent(proc)


@pytest.fixture
def world(new_db: Callable[..., str], agent_proc: AgentProcess) -> Iterator[World]:
    """A fresh database with the inventory of tests/worlds.py; the agent holds its storage."""
    w = build_world(new_db(), agent_proc)
    try:
        yield w
    finally:
        w.sim.clear_faults()
        w.conn.close()


# Test files (agents' storage domains, task records) live on tmpfs when there is one: the
# agent fsyncs every file and directory it writes exactly as in production, and on tmpfs an
# fsync costs microseconds instead of milliseconds (the order of those fsyncs is tested on its
# own in tests/agent/test_agent_durability.py). One directory per session, removed at its end;
# those of killed sessions are swept after a while. --basetemp given on the command line wins.
_SHM_PREFIX = "movedisk-pytest-"


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or config.option.basetemp:
        return  # an xdist worker gets its own directory under the controller's
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return
    now = time.time()
    for old in shm.glob(_SHM_PREFIX + "*"):
        try:
            if now - old.stat().st_mtime > 6 * 3600:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    base = Path(tempfile.mkdtemp(prefix=_SHM_PREFIX, dir=shm))
    os.chmod(base, 0o755)  # the cluster's unprivileged account walks through it
    config.option.basetemp = str(base / "t")
    config._movedisk_shm_base = base  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    base = getattr(config, "_movedisk_shm_base", None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    clones = TIMINGS.get("clone_s") or []
    parts = [f"cluster initdb+start {TIMINGS.get('cluster_start_s', 0):.2f}s"]
    if "template_deploy_s" in TIMINGS:
        parts.append(f"template deploy {TIMINGS['template_deploy_s']:.3f}s")
    if clones:
        clones = sorted(clones)  # type: ignore[assignment]
        parts.append(f"{len(clones)} database clones, median {clones[len(clones) // 2] * 1000:.1f}ms")
    pairs = sorted(TIMINGS.get("replicated_start_s") or [])  # type: ignore[type-var]
    if pairs:
        parts.append(f"{len(pairs)} primary+standby pairs, median start {pairs[len(pairs) // 2]:.2f}s")
    terminalreporter.write_line("movedisk: " + ", ".join(parts))
