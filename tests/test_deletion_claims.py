"""Claims of pending storage deletions (image_groups_to_be_deleted) between processes: a lease
taken by one process is never taken by another while it holds it, even by a claim whose scan
started before that lease was committed (two cleanups at once each deleted the same image group
before this was fixed: the scan read the leases as they were when it started, and the row lock
it then took no longer stood for the lease)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from feature_rows import make_domain, make_pool
from psycopg.rows import dict_row

pytestmark = pytest.mark.commits

CLAIM = ("SELECT image_group_id FROM ClaimImageGroupsToBeDeleted("
         "%s, 60, %s, FALSE, v_image_group_id => %s)")
ROWS = 60  # more than one fetch of the claim's loop (its cursor locks rows as it fetches them)


def _pending(conn: psycopg.Connection[Any], n: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    pool = make_pool(conn)
    sd = make_domain(conn, pool)
    groups = [uuid.uuid4() for _ in range(n)]
    for i, g in enumerate(groups):
        conn.execute(
            "INSERT INTO image_groups_to_be_deleted (image_group_id, storage_domain_id, "
            "storage_pool_id, reason, _create_date) "
            "VALUES (%s, %s, %s, 'MOVE_FAILED', now() - make_interval(secs => %s))",
            (g, sd, pool, n - i))
    return sd, groups


def _lease_owner(conn: psycopg.Connection[Any], group: uuid.UUID) -> str | None:
    row = conn.execute("SELECT lease_owner FROM image_group_deletion_leases "
                       "WHERE image_group_id = %s", (group,)).fetchone()
    return row["lease_owner"] if row else None


def test_a_claim_that_started_before_another_claim_committed_leaves_that_lease_alone(
    new_db: Callable[..., str],
) -> None:
    dsn = new_db()
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as admin:
        _sd, groups = _pending(admin, ROWS)
        first, last = groups[0], groups[-1]
        # A third session holds an (expired) lease row of the first deletion, uncommitted: the
        # claim of process B stops there, its scan already made, before it reaches the last row.
        holder = psycopg.connect(dsn, row_factory=dict_row)
        holder.execute("INSERT INTO image_group_deletion_leases (image_group_id, storage_domain_id, "
                       "lease_owner, lease_expires) SELECT image_group_id, storage_domain_id, "
                       "'gone-host:1:1', now() - interval '1 hour' FROM image_groups_to_be_deleted "
                       "WHERE image_group_id = %s", (first,))
        b_result: list[Any] = []

        def claim_b() -> None:
            with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as b:
                try:
                    b_result.extend(r["image_group_id"] for r in
                                    b.execute(CLAIM, ("engine-b", ROWS + 10, None)).fetchall())
                except psycopg.Error as exc:  # pragma: no cover - reported below
                    b_result.append(exc)

        t = threading.Thread(target=claim_b)
        t.start()
        deadline = time.monotonic() + 10
        while not admin.execute(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE %s", ("%ClaimImageGroupsToBeDeleted%",)).fetchone()["n"]:
            assert time.monotonic() < deadline, "process B's claim never waited"
            time.sleep(0.02)
        # Process A claims the last deletion (B has not reached it) and commits.
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as a:
            got = [r["image_group_id"] for r in a.execute(CLAIM, ("engine-a", 10, last)).fetchall()]
        assert got == [last]
        holder.commit()
        holder.close()
        t.join(30)
        assert not t.is_alive()
        assert all(isinstance(g, uuid.UUID) for g in b_result), b_result
        # B took every deletion but the one A holds (the expired lease it waited for included).
        assert set(b_result) == set(groups) - {last}
        assert _lease_owner(admin, last) == "engine-a"
        assert _lease_owner(admin, first) == "engine-b"


def test_a_live_owners_lease_is_kept_renewed_by_it_and_a_dead_owners_taken_at_once(
    new_db: Callable[..., str],
) -> None:
    dsn = new_db()
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as admin:
        _sd, (group,) = _pending(admin, 1)
        admin.execute("INSERT INTO image_group_deletion_leases (image_group_id, storage_domain_id, "
                      "lease_owner, lease_expires) SELECT image_group_id, storage_domain_id, "
                      "'engine-a', now() + interval '1 minute' FROM image_groups_to_be_deleted")
        # A second claim by another owner gets nothing while A's lease runs; A's own renews it.
        assert admin.execute(CLAIM, ("engine-b", 10, None)).fetchall() == []
        assert [r["image_group_id"] for r in admin.execute(CLAIM, ("engine-a", 10, None))] == [group]
        assert _lease_owner(admin, group) == "engine-a"
        # A dead owner's lease is taken at once.
        assert [r["image_group_id"] for r in admin.execute(
            "SELECT image_group_id FROM ClaimImageGroupsToBeDeleted('engine-b', 60, 10, FALSE, "
            "v_dead_owners => ARRAY['engine-a'])")] == [group]
        assert _lease_owner(admin, group) == "engine-b"
