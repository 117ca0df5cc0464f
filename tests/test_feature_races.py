"""The phase functions against each other: two real connections, the first holding its
transaction open while the second runs, in both orders, for every pair that can meet.

Each pair is one row of PAIRS: the committed state both start from, the two calls, and for
each order what the first and the second call answer (a count or an SQLSTATE) and the state
left once both ended. The second call must wait for the first (every function locks the
original disk's volumes before it reads what it decides on); the test proves it waited
whenever the first call succeeded.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import races
from feature_rows import make_domain, setup
from psycopg.rows import dict_row

STATUS = {1: "OK", 2: "LOCKED", 4: "ILLEGAL"}


@dataclass
class Ctx:
    """The ids of one race: the disk, its domains, and the temporary disks made so far."""

    disk: uuid.UUID
    pool: uuid.UUID
    src: uuid.UUID
    dest: uuid.UUID
    dest2: uuid.UUID
    tmp: uuid.UUID | None = None  # the temporary disk of move 1 (S -> D)
    tmp2: uuid.UUID | None = None  # of move 2 (S -> D2)
    chosen: uuid.UUID = field(default_factory=uuid.uuid4)  # a temporary disk id chosen up front

    def names(self) -> dict[uuid.UUID, str]:
        return {self.src: "S", self.dest: "D", self.dest2: "D2"}


# The calls, with the ids they take from the context.
CALLS: dict[str, tuple[str, Callable[[Ctx], tuple]]] = {
    "phase1": ("SELECT count(*) AS n FROM CreateTemporaryDiskForMove(%s, %s, %s)",
               lambda c: (c.disk, c.src, c.dest)),
    "phase1_chosen_id": (
        "SELECT count(*) AS n FROM CreateTemporaryDiskForMove(%s, %s, %s, v_new_image_group_id => %s)",
        lambda c: (c.disk, c.src, c.dest, c.chosen)),
    "phase1_to_D2": ("SELECT count(*) AS n FROM CreateTemporaryDiskForMove(%s, %s, %s)",
                     lambda c: (c.disk, c.src, c.dest2)),
    "phase3": ("SELECT UpdateImageGroupStorageDomain(%s, %s, %s) AS n",
               lambda c: (c.disk, c.src, c.dest)),
    "phase3_of_move2": ("SELECT UpdateImageGroupStorageDomain(%s, %s, %s) AS n",
                        lambda c: (c.disk, c.src, c.dest2)),
    "compensate": ("SELECT MarkTemporaryDiskIllegal(%s, v_unlock_original => TRUE) AS n",
                   lambda c: (c.tmp,)),
    "end_refused": ("SELECT MarkTemporaryDiskIllegal(%s) AS n", lambda c: (c.tmp,)),
    "remove": ("SELECT RemoveTemporaryDisk(%s) AS n", lambda c: (c.tmp,)),
    "remove_deleted": ("SELECT RemoveTemporaryDisk(%s, v_storage_deleted => TRUE) AS n",
                       lambda c: (c.tmp,)),
    "confirm_D": ("SELECT ConfirmImageGroupDeleted(%s, %s) AS n", lambda c: (c.disk, c.dest)),
    "confirm_S": ("SELECT ConfirmImageGroupDeleted(%s, %s) AS n", lambda c: (c.disk, c.src)),
}


def _call(conn: psycopg.Connection[Any], name: str, ctx: Ctx) -> int:
    query, args = CALLS[name]
    return conn.execute(query, args(ctx)).fetchone()["n"]


def _phase1(conn: psycopg.Connection[Any], ctx: Ctx, dest: uuid.UUID) -> uuid.UUID:
    return conn.execute(
        "SELECT DISTINCT temporary_disk_id FROM CreateTemporaryDiskForMove(%s, %s, %s)",
        (ctx.disk, ctx.src, dest),
    ).fetchone()["temporary_disk_id"]


# The committed states a race starts from.
def fresh(conn: psycopg.Connection[Any], ctx: Ctx) -> None:
    pass


def in_flight(conn: psycopg.Connection[Any], ctx: Ctx) -> None:
    ctx.tmp = _phase1(conn, ctx, ctx.dest)


def after_phase3(conn: psycopg.Connection[Any], ctx: Ctx) -> None:
    in_flight(conn, ctx)
    _call(conn, "phase3", ctx)


def compensated(conn: psycopg.Connection[Any], ctx: Ctx) -> None:
    in_flight(conn, ctx)
    _call(conn, "compensate", ctx)


def deletion_refused(conn: psycopg.Connection[Any], ctx: Ctx) -> None:
    after_phase3(conn, ctx)
    _call(conn, "end_refused", ctx)


def second_move_in_flight(conn: psycopg.Connection[Any], ctx: Ctx) -> None:
    compensated(conn, ctx)
    ctx.tmp2 = _phase1(conn, ctx, ctx.dest2)


SETUPS = {f.__name__: f for f in (fresh, in_flight, after_phase3, compensated, deletion_refused,
                                  second_move_in_flight)}


def state(conn: psycopg.Connection[Any], ctx: Ctx) -> dict[str, Any]:
    """What a user would see: the disk's status and domains, its temporary disks (by the
    destination of their move) and the pending storage deletions."""
    names = ctx.names()
    disk = conn.execute(
        "SELECT array_agg(DISTINCT i.imagestatus) AS st, array_agg(DISTINCT m.storage_domain_id) AS sd "
        "FROM images i JOIN image_storage_domain_map m ON m.image_id = i.image_guid "
        "WHERE i.image_group_id = %s", (ctx.disk,)).fetchone()
    temps = conn.execute(
        "SELECT DISTINCT tmp.image_group_id, t.dest_storage, tmp.imagestatus "
        "FROM images_to_be_deleted t JOIN images tmp ON tmp.image_guid = t.image_id "
        "WHERE t.src_image_group_id = %s", (ctx.disk,)).fetchall()
    pending = conn.execute(
        "SELECT storage_domain_id, reason FROM GetImageGroupsToBeDeletedByImageGroupId(%s)",
        (ctx.disk,)).fetchall()
    return {
        "disk": (sorted(STATUS[s] for s in disk["st"]), sorted(names[d] for d in disk["sd"])),
        "temporary": sorted((names[t["dest_storage"]], STATUS[t["imagestatus"]]) for t in temps),
        "pending": sorted((names[p["storage_domain_id"]], p["reason"]) for p in pending),
    }


def St(disk: str, on: str, temporary: tuple = (), pending: tuple = ()) -> dict[str, Any]:
    """The expected state, spelt short: St("OK", "D", [("D", "LOCKED")], [("S", "SOURCE...")])."""
    return {"disk": ([disk], [on]), "temporary": sorted(temporary), "pending": sorted(pending)}


@dataclass(frozen=True)
class Outcome:
    first: int | str  # what the call that ran first answered: a count, or an SQLSTATE
    second: int | str
    final: dict[str, Any]


@dataclass(frozen=True)
class Pair:
    setup: str
    x: str
    y: str
    x_first: Outcome
    y_first: Outcome


MF, SAM = "MOVE_FAILED", "SOURCE_AFTER_MOVE"
ON_S_ILLEGAL = St("OK", "S", [("D", "ILLEGAL")], [("D", MF)])
PAIRS = [
    # phase 1 vs phase 1: one move of a disk at a time; the loser sees LOCKED.
    Pair("fresh", "phase1", "phase1",
         Outcome(2, "MD003", St("LOCKED", "S", [("D", "LOCKED")])),
         Outcome(2, "MD003", St("LOCKED", "S", [("D", "LOCKED")]))),
    Pair("fresh", "phase1", "phase1_to_D2",
         Outcome(2, "MD003", St("LOCKED", "S", [("D", "LOCKED")])),
         Outcome(2, "MD003", St("LOCKED", "S", [("D2", "LOCKED")]))),
    # phase 1 retried with the temporary disk id chosen up front: the repeat answers no row.
    Pair("fresh", "phase1_chosen_id", "phase1_chosen_id",
         Outcome(2, 0, St("LOCKED", "S", [("D", "LOCKED")])),
         Outcome(2, 0, St("LOCKED", "S", [("D", "LOCKED")]))),
    # phase 3 vs compensation (scenario 1): whichever commits first decides; the other refuses.
    Pair("in_flight", "phase3", "compensate",
         Outcome(2, "MD003", St("OK", "D", [("D", "LOCKED")])),
         Outcome(2, "MD003", ON_S_ILLEGAL)),
    # phase 3 vs the ends with success: they wait for phase 3, and refuse before it.
    Pair("in_flight", "phase3", "remove_deleted",
         Outcome(2, 2, St("OK", "D")),
         Outcome("MD003", 2, St("OK", "D", [("D", "LOCKED")]))),
    Pair("in_flight", "phase3", "end_refused",
         Outcome(2, 2, St("OK", "D", [("D", "ILLEGAL")], [("S", SAM)])),
         Outcome("MD003", 2, St("OK", "D", [("D", "LOCKED")]))),
    # phase 3 twice (recovery rolling forward from two processes): the repeat answers 0.
    Pair("in_flight", "phase3", "phase3",
         Outcome(2, 0, St("OK", "D", [("D", "LOCKED")])),
         Outcome(2, 0, St("OK", "D", [("D", "LOCKED")]))),
    # compensation twice: the repeat answers 0.
    Pair("in_flight", "compensate", "compensate",
         Outcome(2, 0, ON_S_ILLEGAL), Outcome(2, 0, ON_S_ILLEGAL)),
    # end with success (deletion refused) vs compensation after phase 3: compensation refuses.
    Pair("after_phase3", "end_refused", "compensate",
         Outcome(2, "MD003", St("OK", "D", [("D", "ILLEGAL")], [("S", SAM)])),
         Outcome("MD003", 2, St("OK", "D", [("D", "ILLEGAL")], [("S", SAM)]))),
    # compensation vs removal: removal refuses a move in flight, and removes rows only after.
    Pair("in_flight", "compensate", "remove",
         Outcome(2, 2, St("OK", "S", [], [("D", MF)])),
         Outcome("MD003", 2, ON_S_ILLEGAL)),
    Pair("compensated", "compensate", "remove",
         Outcome(0, 2, St("OK", "S", [], [("D", MF)])),
         Outcome(2, "MD001", St("OK", "S", [], [("D", MF)]))),
    # phase 1 of a new move vs compensation of the move in flight.
    Pair("in_flight", "compensate", "phase1_to_D2",
         Outcome(2, 2, St("LOCKED", "S", [("D", "ILLEGAL"), ("D2", "LOCKED")], [("D", MF)])),
         Outcome("MD003", 2, ON_S_ILLEGAL)),
    # phase 1 of a new move vs phase 3 of the move in flight: after phase 3 the disk left S.
    Pair("in_flight", "phase3", "phase1_to_D2",
         Outcome(2, "MD002", St("OK", "D", [("D", "LOCKED")])),
         Outcome("MD003", 2, St("OK", "D", [("D", "LOCKED")]))),
    # phase 1 of a new move vs removal of the old move's temporary disk: both go through.
    Pair("compensated", "remove", "phase1_to_D2",
         Outcome(2, 2, St("LOCKED", "S", [("D2", "LOCKED")], [("D", MF)])),
         Outcome(2, 2, St("LOCKED", "S", [("D2", "LOCKED")], [("D", MF)]))),
    # a new move onto the domain where a failed move's copy is still to be deleted: refused.
    Pair("compensated", "phase1", "confirm_D",
         Outcome("MD003", 1, St("OK", "S", [("D", "ILLEGAL")])),
         Outcome(1, 2, St("LOCKED", "S", [("D", "ILLEGAL"), ("D", "LOCKED")]))),
    # removal vs removal: the second finds the temporary disk gone (MD001).
    Pair("compensated", "remove", "remove",
         Outcome(2, "MD001", St("OK", "S", [], [("D", MF)])),
         Outcome(2, "MD001", St("OK", "S", [], [("D", MF)]))),
    Pair("deletion_refused", "remove_deleted", "remove_deleted",
         Outcome(2, "MD001", St("OK", "D")), Outcome(2, "MD001", St("OK", "D"))),
    # removal of the source leftover vs its confirmation: RemoveTemporaryDisk confirms it.
    Pair("deletion_refused", "remove_deleted", "confirm_S",
         Outcome(2, 0, St("OK", "D")),
         Outcome("MD003", 2, St("OK", "D"))),
    # cleanup twice: the repeat answers 0.
    Pair("compensated", "confirm_D", "confirm_D",
         Outcome(1, 0, St("OK", "S", [("D", "ILLEGAL")])),
         Outcome(1, 0, St("OK", "S", [("D", "ILLEGAL")]))),
    # a second move vs an old compensation (scenario 1): the old one changes nothing.
    Pair("compensated", "phase1_to_D2", "compensate",
         Outcome(2, 0, St("LOCKED", "S", [("D", "ILLEGAL"), ("D2", "LOCKED")], [("D", MF)])),
         Outcome(0, 2, St("LOCKED", "S", [("D", "ILLEGAL"), ("D2", "LOCKED")], [("D", MF)]))),
    Pair("second_move_in_flight", "phase3_of_move2", "compensate",
         Outcome(2, "MD003", St("OK", "D2", [("D", "ILLEGAL"), ("D2", "LOCKED")], [("D", MF)])),
         Outcome(0, 2, St("OK", "D2", [("D", "ILLEGAL"), ("D2", "LOCKED")], [("D", MF)]))),
]

def _orders(p: Pair) -> list[tuple[str, str, Outcome]]:
    """Both orders of a pair (one when both calls are the same)."""
    both = [(p.x, p.y, p.x_first), (p.y, p.x, p.y_first)]
    return both[:1] if p.x == p.y else both


CASES = [
    pytest.param(p, first, second, outcome, id=f"{p.setup}:{first}-then-{second}")
    for p in PAIRS
    for first, second, outcome in _orders(p)
]


def _run(conn: psycopg.Connection[Any], name: str, ctx: Ctx) -> int | str:
    try:
        return _call(conn, name, ctx)
    except psycopg.Error as exc:
        return exc.sqlstate or type(exc).__name__


def race(dsn: str, ctx: Ctx, first: str, second: str,
         kill_first: bool = False) -> tuple[int | str, int | str, bool]:
    """The calls named ``first`` and ``second`` of the race (tests/races.py): both answers
    and whether the second waited for the first."""
    return races.race(dsn, lambda c: _run(c, first, ctx), lambda c: _run(c, second, ctx),
                      kill_first=kill_first)


def prepare(dsn: str, setup_name: str) -> Ctx:
    with psycopg.connect(dsn, row_factory=dict_row, autocommit=True) as conn:
        s = setup(conn)
        ctx = Ctx(s.disk.disk_id, s.pool, s.src, s.dest, make_domain(conn, s.pool, name="D2"))
        SETUPS[setup_name](conn, ctx)
    return ctx


@pytest.fixture(scope="module")
def races_dsn(databases, template_db):
    """One database for every race of this module: each race provisions its own pool, domains
    and disk, so that races never touch each other's rows (and no clone per race)."""
    dsn = databases.create("movedisk_races", template_db)
    yield dsn
    databases.drop("movedisk_races")


def findings_about(conn: psycopg.Connection[Any], ctx: Ctx) -> list[dict[str, Any]]:
    """VerifyAll's findings about this race's disk, its volumes and its temporary disks."""
    return conn.execute(
        "WITH ids AS ("
        "  SELECT %s::uuid AS id UNION SELECT image_guid FROM images WHERE image_group_id = %s"
        "  UNION SELECT tmp.image_group_id FROM images_to_be_deleted t "
        "        JOIN images tmp ON tmp.image_guid = t.image_id WHERE t.src_image_group_id = %s"
        "  UNION SELECT t.image_id FROM images_to_be_deleted t WHERE t.src_image_group_id = %s) "
        "SELECT f.check_name, f.message FROM VerifyAll() f "
        "WHERE f.entity_id IN (SELECT id FROM ids) OR f.related_ids && ARRAY(SELECT id FROM ids)",
        (ctx.disk,) * 4).fetchall()


@pytest.mark.parametrize("pair, first, second, expected", CASES)
def test_pair(races_dsn, pair: Pair, first: str, second: str, expected: Outcome) -> None:
    dsn = races_dsn
    ctx = prepare(dsn, pair.setup)
    got_first, got_second, waited = race(dsn, ctx, first, second)
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        final = state(conn, ctx)
        findings = findings_about(conn, ctx)
    assert (got_first, got_second) == (expected.first, expected.second)
    assert final == expected.final
    # The second call decided on what the first left: it waited for the first's locks. A first
    # call that failed released them at once (its transaction aborted), having changed nothing.
    assert waited == isinstance(expected.first, int)
    # No race leaves anything a DBA would have to repair.
    assert findings == []


def test_the_table_covers_every_pair_the_issue_names() -> None:
    kinds = {
        "phase1": "phase1", "phase1_chosen_id": "phase1", "phase1_to_D2": "phase1",
        "phase3": "phase3",
        "phase3_of_move2": "phase3", "compensate": "compensation", "end_refused": "end",
        "remove_deleted": "end", "remove": "removal", "confirm_D": "cleanup",
        "confirm_S": "cleanup",
    }
    met = {frozenset((kinds[p.x], kinds[p.y])) for p in PAIRS}
    for needed in (("phase1", "phase1"), ("phase3", "compensation"), ("phase3", "end"),
                   ("compensation", "removal"), ("removal", "removal"),
                   ("phase1", "compensation"), ("phase1", "phase3"), ("phase1", "removal")):
        assert frozenset(needed) in met, needed
    # A second move against an old compensation, at phase 1 and at phase 3.
    assert {("compensated", "phase1_to_D2"), ("second_move_in_flight", "phase3_of_move2")} <= {
        (p.setup, p.x) for p in PAIRS}
    assert len(CASES) == sum(len(_orders(p)) for p in PAIRS) > len(PAIRS)
    # A pair of two same calls is run in one order: the table must not claim two outcomes.
    assert all(p.x_first == p.y_first for p in PAIRS if p.x == p.y)


KILLED = [
    pytest.param(p, first, second, id=f"{p.setup}:{first}-killed-then-{second}")
    for p in PAIRS
    for first, second, outcome in _orders(p)
    if isinstance(outcome.first, int) and outcome.first > 0
]


@pytest.mark.parametrize("pair, first, second", KILLED)
def test_pair_whose_first_dies_before_commit(races_dsn, pair: Pair, first: str, second: str) -> None:
    """The first call's process dies holding its transaction: the second waited for nothing
    that happened, so it answers, and leaves, exactly what it does alone."""
    alone_ctx = prepare(races_dsn, pair.setup)
    with psycopg.connect(races_dsn, row_factory=dict_row) as conn:
        alone = _run(conn, second, alone_ctx)
        conn.commit() if isinstance(alone, int) else conn.rollback()
        alone_state = state(conn, alone_ctx)
    ctx = prepare(races_dsn, pair.setup)
    got_first, got_second, waited = race(races_dsn, ctx, first, second, kill_first=True)
    assert isinstance(got_first, int) and waited
    with psycopg.connect(races_dsn, row_factory=dict_row) as conn:
        assert (got_second, state(conn, ctx)) == (alone, alone_state)
        assert findings_about(conn, ctx) == []


def test_the_findings_filter_sees_a_finding_about_the_race(races_dsn) -> None:
    """The VerifyAll check of each race is not blind: a disk LOCKED by nothing is seen."""
    ctx = prepare(races_dsn, "compensated")
    with psycopg.connect(races_dsn, row_factory=dict_row) as conn:
        assert findings_about(conn, ctx) == []
        conn.execute("UPDATE images SET imagestatus = 2 WHERE image_group_id = %s", (ctx.disk,))
        assert [f["check_name"] for f in findings_about(conn, ctx)] == ["locked_image_without_command"]
        conn.rollback()


def test_random_calls_from_four_connections_never_deadlock_or_leave_a_finding(races_dsn) -> None:
    """Four connections run the phase functions on one disk in random order (moving it back
    and forth between S and D), each call in its own transaction: no deadlock (40P01), no
    error outside the contract, and whatever the interleaving, a state VerifyAll finds
    nothing in."""
    import random

    ctx = prepare(races_dsn, "fresh")
    names = [n for n in CALLS if n not in ("phase3_of_move2",)]
    answers: list[int | str] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        with psycopg.connect(races_dsn, row_factory=dict_row) as conn:
            for _ in range(40):
                with lock:  # learn where the disk is and its latest temporary disk, as an
                    # engine would (the disk moves back and forth between S and D)
                    row = conn.execute(
                        "SELECT tmp.image_group_id AS id FROM images_to_be_deleted t "
                        "JOIN images tmp ON tmp.image_guid = t.image_id "
                        "WHERE t.src_image_group_id = %s ORDER BY t._create_date DESC LIMIT 1",
                        (ctx.disk,)).fetchone()
                    on_d = conn.execute(
                        "SELECT IsImageGroupOnStorageDomain(%s, %s) AS b", (ctx.disk, ctx.dest)
                    ).fetchone()["b"]
                    conn.commit()
                    src, dest = (ctx.dest, ctx.src) if on_d else (ctx.src, ctx.dest)
                    local = Ctx(**{**ctx.__dict__, "tmp": row["id"] if row else ctx.disk,
                                   "src": src, "dest": dest})
                got = _run(conn, rnd.choice(names), local)
                conn.commit() if isinstance(got, int) else conn.rollback()
                with lock:
                    answers.append(got)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 160
    assert {a for a in answers if not isinstance(a, int)} <= {"MD001", "MD002", "MD003", "MD006"}
    assert any(isinstance(a, int) and a > 0 for a in answers)
    with psycopg.connect(races_dsn, row_factory=dict_row) as conn:
        assert findings_about(conn, ctx) == []
        # The disk is whole on exactly one domain (I1 in the database's terms).
        assert state(conn, ctx)["disk"][1] in (["S"], ["D"], ["D2"])
