"""Who a server is in a replicated cluster, how far a standby lags, and the split-brain guard.

The engine changes state only on the primary. :func:`require_primary` is the check
every state-changing command runs first (through ``db.primary_transaction``):

- the server is not in recovery and not read-only (a standby is refused);
- no other server of the same cluster (same system identifier) named in the DSN is on
  a later timeline. A promote starts a new timeline, so an old primary restarted by
  mistake, still read-write and still on the old timeline, is found out by asking the
  promoted server (or a standby that follows it) and is refused.

The fencing the engine expects from the operator: after a promote the old primary is
never started again as a primary; it comes back only as a standby of the new primary
(rebuilt with pg_basebackup, or pg_rewind + standby.signal). The DSN the engine uses
names every server (``host=a,b target_session_attrs=read-write``), so the guard above can
catch the mistake whenever the new primary or one of its standbys is reachable; a peer
that cannot be reached does not stop the engine (a dead standby must not stop moves).
A standby's timeline is read from its WAL receiver, which only roles with
pg_read_all_stats see; for other roles it is the timeline of its last restartpoint, so
the promoted server itself is the reliable witness: keep it in the DSN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from .errors import NotPrimary

# One round trip. The timeline of a primary is the one it writes WAL on (the first
# 8 hex digits of its current WAL file); a standby's is the one it receives (or, with
# no WAL receiver, the one of its last restartpoint).
_ROLE_QUERY = """
SELECT c.system_identifier::text AS system_identifier,
       pg_is_in_recovery() AS in_recovery,
       current_setting('transaction_read_only') = 'on' AS read_only,
       CASE WHEN pg_is_in_recovery()
            THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),
                          (SELECT timeline_id FROM pg_control_checkpoint()))
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END AS timeline,
       CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END AS current_lsn,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint
           AS replay_lag_bytes,
       pg_last_xact_replay_timestamp() AS last_replayed_commit_at,
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
           AS seconds_since_last_replayed_commit,
       -- Without pg_read_all_stats a role sees the WAL receiver's pid but not its status.
       (SELECT CASE WHEN pid IS NOT NULL THEN coalesce(status, 'running')
               END FROM pg_stat_wal_receiver) AS wal_receiver
FROM pg_control_system() AS c
"""

_STANDBYS_QUERY = """
SELECT application_name, state, sync_state, sent_lsn::text, replay_lsn::text,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS replay_lag_bytes,
       extract(epoch FROM replay_lag)::float8 AS replay_lag_seconds
FROM pg_stat_replication ORDER BY application_name
"""


@dataclass(frozen=True)
class ServerRole:
    """What one server is: primary or standby, its timeline, and (a standby) its lag."""

    host: str
    port: str
    system_identifier: str
    in_recovery: bool
    read_only: bool
    timeline: int | None
    current_lsn: str | None
    receive_lsn: str | None
    replay_lsn: str | None
    replay_lag_bytes: int | None
    last_replayed_commit_at: datetime | None
    seconds_since_last_replayed_commit: float | None
    wal_receiver: str | None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def kind(self) -> str:
        return "standby" if self.in_recovery else "primary"

    def to_json(self) -> dict[str, Any]:
        return {"role": self.kind, **asdict(self)}


def server_role(conn: psycopg.Connection[Any]) -> ServerRole:
    """The role, timeline and replication position of the server ``conn`` is on."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_ROLE_QUERY).fetchone()
    assert row is not None
    return ServerRole(host=conn.info.host, port=str(conn.info.port), **row)


def standbys(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """The standbys streaming from this primary, with how far each lags (pg_stat_replication)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(_STANDBYS_QUERY).fetchall())


def lag_summary(role: ServerRole) -> str:
    """One line on how far a standby lags, for people."""
    if not role.in_recovery:
        return f"{role.where}: primary on timeline {role.timeline}"
    parts = [f"{role.where}: standby on timeline {role.timeline}"]
    parts.append(f"received {role.receive_lsn}, replayed {role.replay_lsn}")
    if role.replay_lag_bytes is not None:
        parts.append(f"{role.replay_lag_bytes} bytes received but not replayed")
    if role.seconds_since_last_replayed_commit is not None:
        parts.append(
            f"last replayed commit {role.seconds_since_last_replayed_commit:.1f}s ago"
        )
    parts.append(f"WAL receiver {role.wal_receiver or 'not running'}")
    return ", ".join(parts)


def dsn_servers(dsn: str) -> list[tuple[str, str]]:
    """The (host, port) pairs a libpq DSN names, in order (libpq's rules for lists)."""
    params = conninfo_to_dict(dsn) if dsn else {}
    hosts = str(params.get("host") or params.get("hostaddr") or "").split(",")
    ports = str(params.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    return [(h, p) for h, p in zip(hosts, ports) if h]


def _peer_role(dsn: str, host: str, port: str) -> ServerRole | None:
    params = conninfo_to_dict(dsn)
    params.pop("hostaddr", None)
    params.update(host=host, port=port, target_session_attrs="any", connect_timeout="2")
    try:
        with psycopg.connect(make_conninfo(**params), autocommit=True) as peer:
            return server_role(peer)
    except psycopg.Error:
        return None


def require_primary(conn: psycopg.Connection[Any], dsn: str = "") -> ServerRole:
    """The server's role if it may change state; NotPrimary (and nothing changed) if not."""
    role = server_role(conn)
    if role.in_recovery:
        raise NotPrimary(
            f"{role.where} is a standby (in recovery): state changes only on the primary; "
            "name every server in the DSN with target_session_attrs=read-write",
            server=role.where,
        )
    if role.read_only:
        raise NotPrimary(f"{role.where} is read-only: state changes only on the primary",
                         server=role.where)
    for host, port in dsn_servers(dsn):
        if (host, port) == (role.host, role.port):
            continue
        peer = _peer_role(dsn, host, port)
        if peer is None or peer.system_identifier != role.system_identifier:
            continue
        if peer.timeline is not None and role.timeline is not None and peer.timeline > role.timeline:
            raise NotPrimary(
                f"{role.where} is an old primary: it is on timeline {role.timeline} but "
                f"{peer.where} ({peer.kind}) is on timeline {peer.timeline}, so a failover "
                f"promoted another server; refusing to change state here (fence "
                f"{role.where}: stop it and rebuild it as a standby)",
                server=role.where,
                newer=peer.where,
            )
    return role
