"""Helpers of the agent tests: the simulator process, tree snapshots, ids."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from movedisk.agent.client import wait_for_agent

REPO = Path(__file__).resolve().parents[2]


class AgentProcess:
    """The simulator as a separate process (its own session, so it outlives its caller)."""

    def __init__(self, root: Path, socket_path: str) -> None:
        self.root = root
        self.socket = socket_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "agent.log"

    def start(self) -> AgentProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "movedisk.agent.server", "--root", str(self.root),
                 "--socket", self.socket],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, env=env,
            )
        try:
            wait_for_agent(self.socket, timeout=10)
        except Exception:
            self.kill()
            raise AssertionError(f"agent did not start:\n{self.log.read_text()}") from None
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait(timeout=10)
        self.proc = None
        return code

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return self.kill()
        self.proc = None
        return code

    def wait_exit(self, timeout: float = 10) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def restart(self) -> AgentProcess:
        self.kill()
        return self.start()


@dataclass
class Pool:
    sp: str
    src: str
    dst: str


def new_id() -> str:
    return str(uuid.uuid4())


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` (but the agent's log, lock and socket): size and digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = (0, "dir")
        for name in filenames:
            if name in ("agent.log", "agent.lock", "agent.sock"):
                continue
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, root)] = (os.path.getsize(path), digest)
    return out


def volume_path(root: Path, sd: str, img: str, vol: str) -> Path:
    return root / "domains" / sd / "images" / img / vol


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def start_agent(root: Path, prefix: str = "mda-") -> AgentProcess:
    """A started agent on ``root`` whose socket sits in a short temp dir of its own (a Unix
    socket path must stay under 108 bytes; ``root`` may be deep)."""
    sockdir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    return AgentProcess(root, os.path.join(sockdir, "agent.sock")).start()


def stop_agent(proc: AgentProcess, graceful: bool = False) -> None:
    """Stop (SIGTERM, ``graceful``) or kill the agent and remove its socket's temp dir."""
    if graceful:
        proc.stop()
    else:
        proc.kill()
    shutil.rmtree(os.path.dirname(proc.socket), ignore_errors=True)


@contextmanager
def running_agent(root: Path, prefix: str = "mda-", graceful: bool = False) -> Iterator[AgentProcess]:
    """``start_agent`` for the length of a ``with`` block."""
    proc = start_agent(root, prefix)
    try:
        yield proc
    finally:
        stop_agent(proc, graceful)
