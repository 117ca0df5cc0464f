"""Commands reach the embedded storage agent without ``--agent`` (its life with db
start|status|stop is checked in tests/test_cli.py's embedded cluster test, embedded_checks.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from embedded_checks import wait_gone

from movedisk.embedded import EmbeddedAgent, agent_client


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mdh-", dir="/tmp"))
    try:
        yield path
    finally:
        EmbeddedAgent(path).stop()
        shutil.rmtree(path, ignore_errors=True)


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
    wait_gone(agent)


def test_a_deep_home_gets_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90)
    agent = EmbeddedAgent(deep)
    sock = str(agent.socket)
    assert len(sock) <= 100 and sock.startswith("/tmp/movedisk-agent-")
    assert EmbeddedAgent(Path("/tmp/x")).socket == Path("/tmp/x/agent/agent.sock")
