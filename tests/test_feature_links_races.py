"""image_move_links under concurrent writers: two real connections, the first holding its
transaction open while the second writes images_to_be_deleted rows of the same source
volumes. No deadlock, no lost or doubled leftover id, and the links equal what
images_to_be_deleted says (VerifyImageMoveLinks finds nothing) whichever commits first.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
import races
from feature_rows import ILLEGAL, make_disk, make_domain, setup
from psycopg.rows import dict_row


@pytest.fixture(scope="module")
def links_dsn(databases, template_db):
    dsn = databases.create("movedisk_links_races", template_db)
    yield dsn
    databases.drop("movedisk_links_races")


def _run(conn: psycopg.Connection[Any], query: str, args: tuple) -> int | str:
    try:
        conn.execute(query, args).fetchall()
        return 0
    except psycopg.Error as exc:
        return exc.sqlstate or "?"


def race(dsn: str, first: tuple[str, tuple], second: tuple[str, tuple]) -> tuple[Any, Any, bool]:
    """Two statements with their arguments raced (tests/races.py): both answers (0 or the
    SQLSTATE) and whether the second waited for the first."""
    return races.race(dsn, lambda c: _run(c, *first), lambda c: _run(c, *second))


def leftovers(conn: psycopg.Connection[Any], image_id: uuid.UUID) -> list[uuid.UUID] | None:
    """The leftover ids of a source volume, as the lookups show them (sorted here)."""
    row = conn.execute("SELECT leftover_image_ids AS ids FROM image_move_links WHERE image_id = %s",
                       (image_id,)).fetchone()
    return None if row is None or row["ids"] is None else sorted(row["ids"])


def link_findings(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM VerifyImageMoveLinks()").fetchall()


PHASE1 = "SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)"
COMPENSATE = "SELECT MarkTemporaryDiskIllegal(%s, v_unlock_original => TRUE)"
REMOVE = "SELECT RemoveTemporaryDisk(%s)"


def compensated_move(conn: psycopg.Connection[Any], disk: uuid.UUID, src: uuid.UUID,
                     dest: uuid.UUID) -> tuple[uuid.UUID, dict[uuid.UUID, uuid.UUID]]:
    rows = conn.execute(PHASE1, (disk, src, dest)).fetchall()
    tmp = rows[0]["temporary_disk_id"]
    conn.execute(COMPENSATE, (tmp,))
    return tmp, {r["original_image_id"]: r["temporary_image_id"] for r in rows}


@pytest.mark.parametrize("order", ["move1_first", "move2_first"])
def test_two_removals_of_different_moves_of_one_disk(links_dsn, order) -> None:
    """Two failed moves of one disk left two ILLEGAL temporary disks: each source volume has
    two leftovers. Removing both at once leaves no leftover and no link row."""
    with psycopg.connect(links_dsn, row_factory=dict_row, autocommit=True) as conn:
        s = setup(conn)
        d2 = make_domain(conn, s.pool, name="D2")
        tmp1, map1 = compensated_move(conn, s.disk.disk_id, s.src, s.dest)
        tmp2, map2 = compensated_move(conn, s.disk.disk_id, s.src, d2)
        for v in s.disk.images:
            assert leftovers(conn, v) == sorted([map1[v], map2[v]])
    calls = [(REMOVE, (tmp1,)), (REMOVE, (tmp2,))]
    if order == "move2_first":
        calls.reverse()
    first, second, waited = race(links_dsn, *calls)
    assert (first, second, waited) == (0, 0, True)
    with psycopg.connect(links_dsn, row_factory=dict_row) as conn:
        for v in s.disk.images:
            assert leftovers(conn, v) is None
        assert conn.execute(
            "SELECT count(*) AS n FROM image_move_links WHERE image_id = ANY(%s)",
            ([*s.disk.images, *map1.values(), *map2.values()],)).fetchone()["n"] == 0
        assert link_findings(conn) == []


@pytest.mark.parametrize("order", ["phase1_first", "removal_first"])
def test_a_removal_while_another_move_of_the_disk_is_in_phase_1(links_dsn, order) -> None:
    """A failed move's temporary disk is removed while a new move of the same disk runs phase 1:
    the source volumes' links lose the old leftover and gain the new one, whichever commits
    first."""
    with psycopg.connect(links_dsn, row_factory=dict_row, autocommit=True) as conn:
        s = setup(conn)
        d2 = make_domain(conn, s.pool, name="D2")
        tmp1, map1 = compensated_move(conn, s.disk.disk_id, s.src, s.dest)
    calls = [(PHASE1, (s.disk.disk_id, s.src, d2)), (REMOVE, (tmp1,))]
    if order == "removal_first":
        calls.reverse()
    first, second, waited = race(links_dsn, *calls)
    assert (first, second, waited) == (0, 0, True)
    with psycopg.connect(links_dsn, row_factory=dict_row) as conn:
        new = {r["src_image_id"]: r["image_id"] for r in conn.execute(
            "SELECT src_image_id, image_id FROM images_to_be_deleted WHERE src_image_group_id = %s",
            (s.disk.disk_id,))}
        assert sorted(new) == sorted(s.disk.images) and not set(new.values()) & set(map1.values())
        for v in s.disk.images:
            assert leftovers(conn, v) == [new[v]]
        assert link_findings(conn) == []


INSERT_ROW = "SELECT InsertImageToBeDeleted(%s, %s, %s, %s, %s)"
DELETE_ROW = "SELECT DeleteImageToBeDeleted(%s)"


@pytest.mark.parametrize("second_op", ["insert", "delete"])
def test_the_trigger_alone_loses_no_leftover_between_two_writers(links_dsn, second_op) -> None:
    """Without the phase functions' locks (the rows written directly, as a DBA's repair might):
    the first transaction adds a leftover of source volume V and stays open; the second adds
    another (or removes an older one) of the same V. It waits for the first's link row, then
    applies its change to what the first committed: both changes are in the links."""
    with psycopg.connect(links_dsn, row_factory=dict_row, autocommit=True) as conn:
        s = setup(conn, volumes=1)
        v = s.disk.images[0]
        temps = [make_disk(conn, s.src, volumes=1, alias=f"t{i}", status=ILLEGAL).images[0]
                 for i in range(3)]
        conn.execute(INSERT_ROW, (temps[0], v, s.disk.disk_id, s.src, s.dest))
    first = (INSERT_ROW, (temps[1], v, s.disk.disk_id, s.src, s.dest))
    second = ((INSERT_ROW, (temps[2], v, s.disk.disk_id, s.src, s.dest)) if second_op == "insert"
              else (DELETE_ROW, (temps[0],)))
    got = race(links_dsn, first, second)
    assert got == (0, 0, True)
    with psycopg.connect(links_dsn, row_factory=dict_row) as conn:
        expected = sorted(temps if second_op == "insert" else temps[1:2])
        assert leftovers(conn, v) == expected
        assert link_findings(conn) == []
        # The lookup shows the same: every leftover, counted once.
        row = conn.execute("SELECT leftover_image_ids, leftover_count FROM images_storage_domain_view "
                           "WHERE image_guid = %s", (v,)).fetchone()
        assert (sorted(row["leftover_image_ids"]), row["leftover_count"]) == (expected, len(expected))


def test_links_follow_every_kind_of_write(links_dsn) -> None:
    """Insert, update of a linking column, update of another column, delete: the links always
    equal what images_to_be_deleted says; the last row gone, no link row is left."""
    with psycopg.connect(links_dsn, row_factory=dict_row, autocommit=True) as conn:
        s = setup(conn, volumes=2)
        a, b = s.disk.images
        t = make_disk(conn, s.src, volumes=1, alias="t", status=ILLEGAL).images[0]
        conn.execute(INSERT_ROW, (t, a, s.disk.disk_id, s.src, s.dest))
        assert leftovers(conn, a) == [t] and link_findings(conn) == []
        conn.execute("UPDATE images_to_be_deleted SET src_image_id = %s WHERE image_id = %s", (b, t))
        assert (leftovers(conn, a), leftovers(conn, b)) == (None, [t])
        assert link_findings(conn) == []
        conn.execute("UPDATE images_to_be_deleted SET _create_date = now() - interval '1 day' "
                     "WHERE image_id = %s", (t,))
        assert link_findings(conn) == []
        conn.execute(DELETE_ROW, (t,))
        assert conn.execute("SELECT count(*) AS n FROM image_move_links WHERE image_id = ANY(%s)",
                            ([a, b, t],)).fetchone()["n"] == 0
        assert link_findings(conn) == []
