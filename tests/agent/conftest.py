"""Fixtures for the storage agent: a real simulator process per test, in a tmp dir.

- ``agent``: an :class:`agenttools.AgentProcess` already started (``.kill()``
  SIGKILLs it, ``.restart()`` starts a new one on the same root, ``.stop()``
  SIGTERMs it); ``restart_agent()`` does the kill and the new start;
- ``client`` / ``sim``: StorageClient and SimControl on its socket;
- ``module_agent``: one agent shared by a module (override ``agent`` and
  ``agent_root`` with it in modules whose tests do not kill it);
- ``pool``: a pool id and two domains (``pool.src``, ``pool.dst``) of 1 GiB each.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agenttools import AgentProcess, Pool, running_agent

from movedisk.agent.client import SimControl, StorageClient


@pytest.fixture
def agent_root(tmp_path: Path) -> Path:
    root = tmp_path / "agent"
    root.mkdir()
    return root


def _run_agent(root: Path) -> Iterator[AgentProcess]:
    with running_agent(root, "mda-") as proc:
        yield proc


@pytest.fixture
def agent(agent_root: Path) -> Iterator[AgentProcess]:
    yield from _run_agent(agent_root)


@pytest.fixture(scope="module")
def module_agent() -> Iterator[AgentProcess]:
    """One agent for a whole module whose tests neither kill it nor count every task
    (each test makes its own domains, so tests do not see each other's image groups).
    Its domains live on a disk filesystem (/var/tmp), not on the tmpfs the other tests use:
    these tests assert what a storage domain's filesystem keeps (holes stay holes), and tmpfs
    allocates in its own units."""
    root = Path(tempfile.mkdtemp(prefix="movedisk-agent-", dir="/var/tmp"))
    try:
        yield from _run_agent(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def restart_agent(agent: AgentProcess) -> Callable[[], AgentProcess]:
    """SIGKILL the agent and start a new one on the same root and socket."""
    return agent.restart


@pytest.fixture
def client(agent: AgentProcess) -> StorageClient:
    return StorageClient(agent.socket, timeout=30)


@pytest.fixture
def sim(agent: AgentProcess) -> SimControl:
    return SimControl(agent.socket, timeout=30)


@pytest.fixture
def pool(sim: SimControl) -> Pool:
    p = Pool(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
    sim.create_domain(p.src, p.sp, 1 << 30)
    sim.create_domain(p.dst, p.sp, 1 << 30)
    return p
