"""Finding server binaries and running them without root."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from movedisk import pgserver
from movedisk.errors import ServerBinariesNotFound


def fake_install(root: Path, version: str) -> Path:
    bindir = root / version / "bin"
    bindir.mkdir(parents=True)
    for name in ("postgres", "initdb"):
        prog = bindir / name
        prog.write_text(f"#!/bin/sh\necho 'postgres (PostgreSQL) {version}'\n")
        prog.chmod(0o755)
    return bindir


def test_newest_installation_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = [fake_install(tmp_path, v) for v in ("13.9", "16.2", "15.18")]
    monkeypatch.delenv("PG_BINDIR", raising=False)
    monkeypatch.setattr(pgserver, "_candidates", lambda: dirs)
    found = pgserver.find_server_binaries()
    assert found.bindir == dirs[1].resolve() and found.version == (16, 2)


def test_pg_bindir_is_taken_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = fake_install(tmp_path, "12.1")
    monkeypatch.setenv("PG_BINDIR", str(old))
    assert pgserver.find_server_binaries().version == (12, 1)


def test_missing_binaries_say_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_BINDIR", str(tmp_path))
    with pytest.raises(ServerBinariesNotFound, match="does not hold runnable 'postgres'"):
        pgserver.find_server_binaries()
    monkeypatch.delenv("PG_BINDIR")
    monkeypatch.setattr(pgserver, "_candidates", lambda: [])
    monkeypatch.setattr(pgserver, "_from_pypi", lambda: None)
    with pytest.raises(ServerBinariesNotFound, match="apt-get install postgresql"):
        pgserver.find_server_binaries()


def test_server_runs_unprivileged_in_a_directory_it_owns(pg_cluster) -> None:
    account = pgserver.server_account()
    assert account.uid != 0
    data = pg_cluster.base / "data"
    assert data.stat().st_uid == account.uid
    pid = int((data / "postmaster.pid").read_text().split()[0])
    assert os.stat(f"/proc/{pid}").st_uid == account.uid
    assert str(pg_cluster.base).startswith("/dev/shm") or not Path("/dev/shm").is_dir()


def test_unreachable_home_falls_back_for_root(tmp_path: Path) -> None:
    account = pgserver.server_account()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    if account.is_self:
        assert pgserver.reachable_by(private, account)
    else:
        assert not pgserver.reachable_by(private / "home", account)
        cluster = pgserver.EmbeddedCluster(private / "home")
        assert str(cluster.datadir).startswith("/var/tmp/movedisk-")


def test_clusters_left_by_killed_runs_are_swept(tmp_path: Path) -> None:
    stale = tmp_path / "movedisk-pg-stale"
    (stale / "data").mkdir(parents=True)
    (stale / "data" / "postmaster.pid").write_text("999999999\n")
    live = tmp_path / "movedisk-pg-live"
    (live / "data").mkdir(parents=True)
    (live / "data" / "postmaster.pid").write_text(f"{os.getpid()}\n")
    young = tmp_path / "movedisk-pg-young"
    young.mkdir()
    old = time.time() - 3600
    for d in (stale, live):
        os.utime(d, (old, old))
    assert pgserver.sweep_stale_clusters(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and young.exists()
