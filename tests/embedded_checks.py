"""The embedded agent's life with ``db start|status|stop``, checked inside the embedded cluster
life-cycle test (tests/test_cli.py) so that both share one initdb."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from cli_runner import run_cli

from movedisk.agent.client import StorageClient
from movedisk.embedded import EmbeddedAgent


def wait_gone(agent: EmbeddedAgent, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while agent.running():
        assert time.monotonic() < deadline, "the agent did not go away"
        time.sleep(0.02)


def check_embedded_agent(home: Path, env: dict[str, str]) -> str:
    """db start starts the agent (pid and socket recorded), db status reports it, a killed
    agent is reported and started again by db start, a second start leaves it alone. Leaves
    cluster and agent running (the caller's db stop must stop both); the agent's socket."""
    res = run_cli("db", "start", "--json", env=env)
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    agent = st["agent"]
    assert st["running"] is True and agent["running"] is True
    assert agent["root"] == str(home / "agent")
    assert StorageClient(agent["socket"]).ping()["pid"] == agent["pid"]
    recorded = json.loads((home / "agent.json").read_text())
    assert (recorded["pid"], recorded["socket"]) == (agent["pid"], agent["socket"])
    res = run_cli("db", "status", env=env)
    assert res.returncode == 0 and f"agent pid: {agent['pid']}" in res.stdout

    os.kill(agent["pid"], signal.SIGKILL)  # the agent this test's db start started
    wait_gone(EmbeddedAgent(home))
    res = run_cli("db", "status", "--json", env=env)
    assert res.returncode == 1
    st = json.loads(res.stdout)
    assert st["running"] is True and st["agent"]["running"] is False
    again = json.loads(run_cli("db", "start", "--json", env=env).stdout)["agent"]
    assert again["running"] is True and again["pid"] != agent["pid"]
    assert StorageClient(again["socket"]).ping()["pid"] == again["pid"]
    assert json.loads(run_cli("db", "start", "--json", env=env).stdout)["agent"]["pid"] == again["pid"]

    return again["socket"]
