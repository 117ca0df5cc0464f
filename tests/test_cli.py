"""The command line: deploy, --json, one-line errors, and the embedded cluster's life cycle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest

from cli_runner import run_cli
from embedded_checks import check_embedded_agent
from movedisk.agent.client import StorageClient
from movedisk.agent.errors import AgentUnavailable
from movedisk.embedded import EmbeddedAgent
from movedisk.sqlfiles import SqlTree

run = run_cli
UPGRADES = [f.name for f in SqlTree.load().upgrades]


def recorded_upgrades(conn: psycopg.Connection) -> list[str]:
    """The upgrade scripts the database records as applied, in order."""
    rows = conn.execute("SELECT script FROM schema_version ORDER BY script").fetchall()
    return [r[0] for r in rows]


def test_deploy_into_an_existing_server_by_dsn(new_db) -> None:
    dsn = new_db(deployed=False)
    res = run("deploy", "--dsn", dsn)
    assert res.returncode == 0, res.stderr
    dbname = dsn.rsplit("dbname=", 1)[1]
    first, second = res.stdout.splitlines()[:2]
    assert first.startswith(f"deployed into database {dbname} on 127.0.0.1:") and "embedded" not in first
    assert second.startswith("fresh install")
    res = run("deploy", "--json", "--dsn", dsn)
    report = json.loads(res.stdout)
    assert report["mode"] == "upgrade" and report["upgrades_applied"] == []
    assert report["target"]["dbname"] == dbname and report["target"]["embedded"] is False
    assert report["functions"] > 20


def test_pg_environment_variables_are_honoured(new_db, pg_cluster) -> None:
    dsn = new_db(deployed=False)
    dbname = dsn.rsplit("dbname=", 1)[1]
    env = {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg_cluster.port),
        "PGUSER": "postgres",
        "PGDATABASE": dbname,
    }
    assert run("deploy", env=env).returncode == 0
    with psycopg.connect(dsn) as conn:
        assert recorded_upgrades(conn) == UPGRADES


def test_unreachable_database_is_one_line_and_non_zero() -> None:
    res = run("deploy", "--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=2")
    assert res.returncode == 12
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("movedisk: ConnectionFailed: ")
    res = run("--json", "deploy", "--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=2")
    assert json.loads(res.stdout)["code"] == "MD103"


@pytest.mark.slow
def test_embedded_cluster_life_cycle(tmp_path: Path) -> None:
    env = {"MOVEDISK_HOME": str(tmp_path / "home")}
    try:
        res = run("deploy", env=env)
        assert res.returncode == 21 and "NoTarget" in res.stderr  # never the embedded one unasked
        res = run("deploy", "--embedded", env=env)  # starts the embedded cluster, then deploys
        assert res.returncode == 0, res.stderr
        assert "fresh install" in res.stdout
        assert res.stdout.startswith("deployed into database movedisk on ") and "(embedded cluster)" in res.stdout
        dsn = json.loads(run("db", "dsn", "--json", env=env).stdout)["dsn"]
        with psycopg.connect(dsn) as conn:
            assert recorded_upgrades(conn) == UPGRADES
        status = json.loads(run("db", "status", "--json", env=env).stdout)
        assert status["running"] is True
        # Only the server's account (and root) can reach its socket: no TCP port.
        assert "host=/" in dsn
        res = run("deploy", "--embedded", env=env)  # a second deploy re-applies there
        assert res.returncode == 0 and "schema up to date" in res.stdout
        socket = check_embedded_agent(tmp_path / "home", env)  # db start starts the agent too
        res = run("db", "stop", "--json", env=env)
        assert res.returncode == 0
        assert json.loads(res.stdout)["agent"]["running"] is False
        assert run("db", "status", env=env).returncode == 1
        assert not EmbeddedAgent(tmp_path / "home").running()
        with pytest.raises(AgentUnavailable):
            StorageClient(socket, timeout=2).ping()
    finally:
        run("db", "stop", env=env)
        state = tmp_path / "home" / "cluster.json"
        if state.exists():
            shutil.rmtree(json.loads(state.read_text())["root"], ignore_errors=True)
