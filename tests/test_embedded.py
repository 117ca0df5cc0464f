"""The embedded storage agent lives and dies with the embedded cluster (db start|status|stop),
and commands reach it without ``--agent``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import run_cli

from movedisk.agent.client import StorageClient
from movedisk.agent.errors import AgentUnavailable
from movedisk.embedded import EmbeddedAgent, agent_client


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mdh-", dir="/tmp"))
    env = {"MOVEDISK_HOME": str(path)}
    try:
        yield path
    finally:
        run_cli("db", "stop", env=env)
        EmbeddedAgent(path).stop()
        state = path / "cluster.json"
        if state.exists():
            shutil.rmtree(json.loads(state.read_text())["root"], ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)


def _wait_gone(agent: EmbeddedAgent, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while agent.running():
        assert time.monotonic() < deadline, "the agent did not go away"
        time.sleep(0.02)


@pytest.mark.slow
def test_db_start_status_stop_cover_the_agent(home: Path) -> None:
    env = {"MOVEDISK_HOME": str(home)}
    res = run_cli("db", "start", "--json", env=env)
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    agent = st["agent"]
    assert st["running"] is True and agent["running"] is True
    assert agent["root"] == str(home / "agent") and agent["socket"] == str(home / "agent/agent.sock")
    assert StorageClient(agent["socket"]).ping()["pid"] == agent["pid"]
    recorded = json.loads((home / "agent.json").read_text())
    assert (recorded["pid"], recorded["socket"]) == (agent["pid"], agent["socket"])
    res = run_cli("db", "status", env=env)
    assert res.returncode == 0 and f"agent pid: {agent['pid']}" in res.stdout

    # an agent that died is reported, and db start brings it back
    os.kill(agent["pid"], signal.SIGKILL)
    _wait_gone(EmbeddedAgent(home))
    res = run_cli("db", "status", "--json", env=env)
    assert res.returncode == 1
    st = json.loads(res.stdout)
    assert st["running"] is True and st["agent"]["running"] is False
    again = json.loads(run_cli("db", "start", "--json", env=env).stdout)["agent"]
    assert again["running"] is True and again["pid"] != agent["pid"]
    assert StorageClient(again["socket"]).ping()["pid"] == again["pid"]
    # a second start leaves the running agent alone
    assert json.loads(run_cli("db", "start", "--json", env=env).stdout)["agent"]["pid"] == again["pid"]

    res = run_cli("db", "stop", "--json", env=env)
    assert res.returncode == 0
    st = json.loads(res.stdout)
    assert st["running"] is False and st["agent"]["running"] is False
    with pytest.raises(AgentUnavailable):
        StorageClient(again["socket"], timeout=2).ping()
    assert run_cli("db", "status", env=env).returncode == 1


def test_agent_client_starts_the_embedded_agent_on_demand(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOVEDISK_HOME", str(home))
    monkeypatch.delenv("MOVEDISK_AGENT_SOCKET", raising=False)
    monkeypatch.delenv("MOVEDISK_AGENT_ROOT", raising=False)
    agent = EmbeddedAgent.default()
    assert not agent.running()
    client = agent_client()
    assert client.ping()["root"] == str(home / "agent")
    assert agent.running()
    # --agent SOCKET (or MOVEDISK_AGENT_SOCKET) wins and starts nothing
    assert agent_client("/nonexistent/agent.sock").socket_path == "/nonexistent/agent.sock"
    monkeypatch.setenv("MOVEDISK_AGENT_SOCKET", "/elsewhere.sock")
    assert agent_client().socket_path == "/elsewhere.sock"
    agent.stop()
    _wait_gone(agent)


def test_a_deep_home_gets_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90)
    agent = EmbeddedAgent(deep)
    sock = str(agent.socket)
    assert len(sock) <= 100 and sock.startswith("/tmp/movedisk-agent-")
    assert EmbeddedAgent(Path("/tmp/x")).socket == Path("/tmp/x/agent/agent.sock")
