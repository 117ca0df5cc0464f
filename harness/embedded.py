"""The embedded storage agent: ``movedisk agent serve`` kept under MOVEDISK_HOME with the cluster.

``movedisk db start`` starts the embedded PostgreSQL and this agent; ``db stop`` stops both;
``db status`` shows both. The agent runs detached (its own session, so it outlives the
command that started it) as ``python -m movedisk agent serve --root MOVEDISK_HOME/agent``;
its pid, socket and log are recorded in ``MOVEDISK_HOME/agent.json``.

Commands that talk to storage take ``--agent SOCKET`` (see :func:`add_agent_option`) and
otherwise use the embedded agent, started on demand as the embedded cluster is::

    from movedisk.embedded import agent_client
    client = agent_client(args.agent)          # StorageClient; --agent or the embedded one

``MOVEDISK_AGENT_SOCKET`` names an agent's socket as ``--agent`` does (the way
``MOVEDISK_DSN`` names a database); ``MOVEDISK_AGENT_ROOT`` moves the embedded root.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .agent.client import SimControl, StorageClient, wait_for_agent
from .agent.errors import AgentError, AgentUnavailable
from .pgserver import movedisk_home

__all__ = [
    "EmbeddedAgent",
    "add_agent_option",
    "agent_client",
    "agent_socket",
    "embedded_client",
]

# A Unix socket path must fit in sun_path (108 bytes with the terminating NUL).
_MAX_SOCKET_PATH = 100


@dataclass
class EmbeddedAgent:
    """The storage agent that lives with the embedded cluster under MOVEDISK_HOME."""

    home: Path

    @classmethod
    def default(cls) -> EmbeddedAgent:
        return cls(movedisk_home())

    @property
    def root(self) -> Path:
        env = os.environ.get("MOVEDISK_AGENT_ROOT")
        return Path(env).expanduser().absolute() if env else self.home / "agent"

    @property
    def state_file(self) -> Path:
        return self.home / "agent.json"

    @property
    def logfile(self) -> Path:
        return self.root / "agent.log"

    @property
    def socket(self) -> Path:
        """ROOT/agent.sock, or a short path under /tmp when ROOT is too deep for a socket."""
        path = self.root / "agent.sock"
        if len(str(path)) <= _MAX_SOCKET_PATH:
            return path
        tag = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path("/tmp") / f"movedisk-agent-{tag}" / "agent.sock"

    def _state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def pid(self) -> int | None:
        """The pid of the agent serving ROOT (from its lock file), if one runs."""
        lock = self.root / "agent.lock"
        try:
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None  # nobody holds the lock: no agent serves ROOT
        finally:
            os.close(fd)

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 15.0) -> dict[str, Any]:
        """Start the agent detached unless one already serves ROOT; its status."""
        if self.running():
            wait_for_agent(self._socket_in_use(), timeout=timeout)
            return self.status()
        self.root.mkdir(parents=True, exist_ok=True)
        sock = self.socket
        sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        cmd = [sys.executable, "-m", "movedisk.cli", "agent", "serve", "--root", str(self.root),
               "--socket", str(sock)]
        with open(self.logfile, "ab") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True, cwd="/", close_fds=True,
            )
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(
            {"pid": proc.pid, "root": str(self.root), "socket": str(sock),
             "log": str(self.logfile), "command": cmd}, indent=2) + "\n")
        deadline = time.monotonic() + timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise AgentUnavailable(
                    f"the embedded storage agent exited with code {code} at start "
                    f"(log: {self.logfile})", log=str(self.logfile))
            try:
                wait_for_agent(str(sock), timeout=0.2)
                return self.status()
            except AgentUnavailable:
                if time.monotonic() > deadline:
                    raise AgentUnavailable(
                        f"the embedded storage agent did not answer on {sock} within "
                        f"{timeout:.0f} s (log: {self.logfile})", log=str(self.logfile)) from None

    def _socket_in_use(self) -> str:
        return str(self._state().get("socket") or self.socket)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the agent serving ROOT (the pid its lock records) and wait for it to exit."""
        pid = self.pid()
        if pid is None or pid <= 0:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                raise AgentError(f"the embedded storage agent (pid {pid}) did not stop within "
                                 f"{timeout:.0f} s")
            time.sleep(0.05)
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it when this process started it
        except ChildProcessError:
            pass

    def status(self) -> dict[str, Any]:
        pid = self.pid()
        return {
            "root": str(self.root),
            "socket": self._socket_in_use(),
            "log": str(self.logfile),
            "running": pid is not None,
            "pid": pid,
        }

    def client(self, timeout: float = 60.0) -> StorageClient:
        return StorageClient(self._socket_in_use(), timeout=timeout)

    def sim(self, timeout: float = 60.0) -> SimControl:
        return SimControl(self._socket_in_use(), timeout=timeout)


def agent_socket(socket: str | None = None, *, start: bool = True) -> str:
    """The agent socket to use: ``socket``, MOVEDISK_AGENT_SOCKET, else the embedded agent's
    (started when ``start`` and not running)."""
    if socket:
        return socket
    env = os.environ.get("MOVEDISK_AGENT_SOCKET")
    if env:
        return env
    agent = EmbeddedAgent.default()
    if start and not agent.running():
        agent.start()
    return agent._socket_in_use()


def agent_client(socket: str | None = None, *, start: bool = True,
                 timeout: float = 60.0) -> StorageClient:
    """A StorageClient on ``--agent SOCKET``, MOVEDISK_AGENT_SOCKET, or the embedded agent."""
    return StorageClient(agent_socket(socket, start=start), timeout=timeout)


def embedded_client(start: bool = True, timeout: float = 60.0) -> StorageClient:
    """A StorageClient on the embedded agent (started when it is not running)."""
    agent = EmbeddedAgent.default()
    if start and not agent.running():
        agent.start()
    return agent.client(timeout=timeout)


def add_agent_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--agent SOCKET`` on a subcommand that talks to the storage agent."""
    parser.add_argument(
        "--agent", default=None, metavar="SOCKET",
        help="the storage agent's socket (default: MOVEDISK_AGENT_SOCKET, else the embedded "
        "agent under MOVEDISK_HOME, started when needed)",
    )
    return parser
