"""Fixtures for the storage agent: a real simulator process per test, in a tmp dir.

- ``agent``: an :class:`agenttools.AgentProcess` already started (``.kill()``
  SIGKILLs it, ``.restart()`` starts a new one on the same root, ``.stop()``
  SIGTERMs it); ``restart_agent()`` does the kill and the new start;
- ``client`` / ``sim``: StorageClient and SimControl on its socket;
- ``pool``: a pool id and two domains (``pool.src``, ``pool.dst``) of 1 GiB each.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agenttools import AgentProcess, Pool

from harness.agent.client import SimControl, StorageClient


@pytest.fixture
def agent_root(tmp_path: Path) -> Path:
    root = tmp_path / "agent"
    root.mkdir()
    return root


@pytest.fixture
def agent(agent_root: Path) -> Iterator[AgentProcess]:
    # A Unix socket path must stay under 108 bytes: keep it in a short temp dir.
    sockdir = tempfile.mkdtemp(prefix="mda-", dir="/tmp")
    proc = AgentProcess(agent_root, os.path.join(sockdir, "agent.sock"))
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()
        shutil.rmtree(sockdir, ignore_errors=True)


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
