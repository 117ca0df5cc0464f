"""The wheel ships the SQL: built from the checkout's files, installed into a fresh
virtualenv outside the checkout, ``movedisk deploy`` run from another directory deploys
exactly what a deploy from the checkout does (same catalog snapshot)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from movedisk.deploy import catalog_snapshot

ROOT = Path(__file__).resolve().parents[1]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PG", "MOVEDISK_", "PYTHON", "VIRTUAL_ENV"))}


@pytest.mark.slow
def test_installed_wheel_deploys_what_the_checkout_deploys(new_db) -> None:
    work = Path(tempfile.mkdtemp(prefix="movedisk-wheel-"))
    try:
        # The files of a fresh clone, nothing else (no build/ or egg-info of the checkout).
        src = work / "src"
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split()
        for name in tracked:
            if (ROOT / name).is_file():
                (src / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, src / name)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
             "-q", "-w", str(work / "dist")],
            cwd=src, check=True, capture_output=True, text=True, env=_clean_env(),
        )
        wheel = next((work / "dist").glob("movedisk-*.whl"))
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
             "-q", "--no-warn-script-location", str(wheel)],
            check=True, capture_output=True, text=True, env=_clean_env(),
        )
        elsewhere = work / "elsewhere"
        elsewhere.mkdir()
        dsn = new_db(deployed=False)
        res = subprocess.run(
            [str(venv / "bin" / "movedisk"), "deploy", "--dsn", dsn],
            cwd=elsewhere, capture_output=True, text=True, env=_clean_env(), timeout=120,
        )
        assert res.returncode == 0, res.stderr
        assert "fresh install" in res.stdout and " 0 functions" not in res.stdout
        # The installed package read its own SQL, not the checkout's.
        where = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import movedisk.sqlfiles as s; print(s.sql_dir())"],
            cwd=elsewhere, capture_output=True, text=True, env=_clean_env(), check=True,
        ).stdout.strip()
        assert where.startswith(str(venv)), where
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with psycopg.connect(dsn) as conn:
        installed = catalog_snapshot(conn)
    with psycopg.connect(new_db()) as conn:  # deployed from the checkout
        checkout = catalog_snapshot(conn)
    assert len(installed) > 500
    assert installed == checkout


def test_deploy_refuses_a_tree_without_sql(new_db, tmp_path: Path) -> None:
    from cli_runner import run_cli

    dsn = new_db(deployed=False)
    (tmp_path / "sql").mkdir()
    res = run_cli("deploy", "--dsn", dsn, env={"MOVEDISK_SQL_DIR": str(tmp_path / "sql")})
    assert res.returncode == 10
    assert res.stderr.startswith("movedisk: DeployError: no SQL files in ")
    assert "tables or /procedures" in res.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regclass('public.schema_version')").fetchone() == (None,)


def test_every_python_package_of_harness_is_in_the_wheel() -> None:
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        "movedisk" + "".join("." + part for part in p.parent.relative_to(ROOT / "harness").parts)
        for p in (ROOT / "harness").rglob("__init__.py")
    }
    assert found - listed == set(), "add them to [tool.setuptools] packages in pyproject.toml"
