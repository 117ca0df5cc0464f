"""Least privilege, checked by trying: the engine role cannot read or write any table directly,
the DBA role can change nothing, no function is callable by PUBLIC (a role given nothing can
call none), every function's search_path is pinned, and a hostile object earlier on the caller's
path (or planted in ``public`` by the role that owns the database) is never picked up.

Each check runs inside the ``db`` fixture's transaction (rolled back), under SET ROLE."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

ENGINE, DBA = "movedisk_engine", "movedisk_dba"


def relations(db: psycopg.Connection[Any], kinds: str = "rvm") -> list[tuple[str, str]]:
    return [(r["relname"], r["relkind"]) for r in db.execute(
        "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relkind = ANY(%s) ORDER BY 1", (list(kinds),)).fetchall()]


def functions(db: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return db.execute("""
        SELECT p.oid, p.proname, p.provolatile, p.proconfig, p.proacl IS NULL AS default_acl,
               ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t) AS types,
               EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS public_acl,
               p.prorettype = 'trigger'::regtype AS is_trigger
        FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace ORDER BY p.proname""").fetchall()


def attempt(db: psycopg.Connection[Any], query: sql.Composable | str, params: Any = None) -> str | None:
    """Run ``query`` in a savepoint: the SQLSTATE it failed with, or None."""
    try:
        with db.transaction():
            cur = db.execute(query, params)
            if cur.description:
                cur.fetchall()
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def call_with_nulls(db: psycopg.Connection[Any], fn: dict[str, Any]) -> str | None:
    q = sql.SQL("SELECT * FROM {}({})").format(sql.Identifier("public", fn["proname"]), sql.SQL(", ").join(
        sql.SQL("NULL::{}").format(sql.SQL(t)) for t in fn["types"]))  # types from the catalog
    try:
        with db.transaction():
            db.execute(q).fetchall()
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def writes(table: str, column: str) -> list[sql.Composed]:
    t, c = sql.Identifier(table), sql.Identifier(column)
    return [sql.SQL("INSERT INTO {} DEFAULT VALUES").format(t),
            sql.SQL("UPDATE {} SET {} = {}").format(t, c, c),
            sql.SQL("DELETE FROM {}").format(t),
            sql.SQL("TRUNCATE {}").format(t)]


def first_column(db: psycopg.Connection[Any], table: str) -> str:
    return str(db.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                          "AND attnum = 1", (f"public.{table}",)).fetchone()["attname"])


def test_the_engine_role_can_neither_read_nor_write_a_table(db) -> None:
    tables = relations(db, "r")
    assert len(tables) > 10
    db.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(ENGINE)))
    denied = []
    for name, _ in tables:
        col = None
        for q in [sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(name))]:
            denied.append((name, "SELECT", attempt(db, q)))
        db.execute("RESET ROLE")
        col = first_column(db, name)
        db.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(ENGINE)))
        for q in writes(name, col):
            denied.append((name, q.as_string(db)[:6], attempt(db, q)))
    allowed = [(t, op, s) for t, op, s in denied if s != "42501"]
    assert not allowed, allowed
    # ... and yet it does its work through the functions.
    assert attempt(db, "SELECT * FROM GetAllFromDisks(NULL, FALSE)") is None
    db.execute("RESET ROLE")


def test_the_dba_role_changes_nothing(db) -> None:
    fns = functions(db)
    tables = relations(db, "r")
    db.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(DBA)))
    problems = []
    for name, _ in tables:
        db.execute("RESET ROLE")
        col = first_column(db, name)
        db.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(DBA)))
        for q in writes(name, col):
            state = attempt(db, q)
            if state != "42501":
                problems.append(f"{q.as_string(db)}: {state}")
    for obj in ("CREATE TABLE public.dba_was_here (x int)", "CREATE SCHEMA dba_was_here",
                "CREATE FUNCTION public.dba_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'"):
        if attempt(db, obj) != "42501":
            problems.append(f"{obj}: allowed")
    callable_ = 0
    db.execute("RESET ROLE")
    may = {r["oid"] for r in db.execute(
        "SELECT oid FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
        "AND has_function_privilege(%s, oid, 'EXECUTE')", (DBA,)).fetchall()}
    db.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(DBA)))
    for fn in fns:
        can = fn["oid"] in may
        state = call_with_nulls(db, fn)
        if can:
            callable_ += 1
            if fn["provolatile"] == "v":
                problems.append(f"{fn['proname']}: the DBA may execute a VOLATILE function")
        elif state != ("42804" if fn["is_trigger"] else "42501"):
            # (a trigger function is called by no role, only by its trigger: 42804)
            problems.append(f"{fn['proname']}: called by the DBA ({state})")
    db.execute("RESET ROLE")
    assert not problems, "\n".join(problems)
    # ... and it reads what it is for: the views and the verification functions.
    db.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(DBA)))
    assert attempt(db, "SELECT * FROM VerifyAll()") is None
    assert attempt(db, "SELECT * FROM storage_domain_usage_view") is None
    db.execute("RESET ROLE")
    assert callable_ >= 5


def test_no_function_is_callable_by_public(db) -> None:
    fns = functions(db)
    assert [f["proname"] for f in fns if f["default_acl"] or f["public_acl"]] == []
    # A role given nothing can call nothing (the schema's USAGE is not PUBLIC's either).
    db.execute("CREATE ROLE movedisk_nobody NOLOGIN")
    db.execute("SET ROLE movedisk_nobody")
    called = [f["proname"] for f in fns
              if call_with_nulls(db, f) != ("42804" if f["is_trigger"] else "42501")]
    db.execute("RESET ROLE")
    assert called == []


def test_every_function_pins_its_search_path(db) -> None:
    unpinned = [f["proname"] for f in functions(db)
                if not any(c.startswith("search_path=") for c in (f["proconfig"] or []))]
    assert unpinned == []
    # pg_temp, if named, comes last: a temporary object never shadows the package's.
    bad = []
    for f in functions(db):
        path = [c for c in f["proconfig"] if c.startswith("search_path=")][0].split("=", 1)[1]
        parts = [p.strip() for p in path.split(",")]
        if "pg_temp" in parts and parts[-1] != "pg_temp":
            bad.append((f["proname"], path))
    assert bad == []


def _a_disk(db) -> dict[str, Any]:
    return db.execute("SELECT image_guid, image_group_id FROM images LIMIT 1").fetchone()


def test_a_hostile_object_earlier_on_the_callers_path_is_not_picked_up(world) -> None:
    """Same-named tables and functions in a schema first on the caller's search_path, and a
    temporary table: the package's functions still read the package's tables."""
    with psycopg.connect(world.dsn, row_factory=psycopg.rows.dict_row) as db:
        img = db.execute("SELECT image_guid, image_group_id FROM images i JOIN base_disks b "
                         "ON b.disk_id = i.image_group_id WHERE b.disk_alias = 'vm1-data' "
                         "LIMIT 1").fetchone()
        want = db.execute("SELECT * FROM GetImageGroupPlacement(%s)",
                          (img["image_group_id"],)).fetchall()
        db.execute("CREATE SCHEMA hostile")
        db.execute("CREATE TABLE hostile.calls (what text)")
        for t in ("images", "base_disks", "image_storage_domain_map", "images_to_be_deleted",
                  "move_disk_commands", "storage_domain_static"):
            db.execute(sql.SQL("CREATE TABLE hostile.{} (LIKE public.{})").format(
                sql.Identifier(t), sql.Identifier(t)))
            db.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE public.{})").format(
                sql.Identifier(t), sql.Identifier(t)))
        db.execute("""CREATE FUNCTION hostile.now() RETURNS timestamptz LANGUAGE plpgsql AS
                      $$BEGIN INSERT INTO hostile.calls VALUES ('now'); RETURN '2000-01-01'; END$$""")
        db.execute("""CREATE FUNCTION hostile.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql AS
                      $$BEGIN INSERT INTO hostile.calls VALUES ('uuid'); RETURN NULL; END$$""")
        db.execute("GRANT USAGE ON SCHEMA hostile TO movedisk_engine")
        db.execute("GRANT ALL ON ALL TABLES IN SCHEMA hostile TO movedisk_engine")
        db.execute("SET search_path = hostile, pg_temp, public")
        db.execute("SET ROLE movedisk_engine")
        got = db.execute("SELECT * FROM public.GetImageGroupPlacement(%s)",
                         (img["image_group_id"],)).fetchall()
        cmd = db.execute("SELECT * FROM public.StartMoveDiskCommand(%s, %s, %s, 'x:1:1', 30, NULL)",
                         (uuid.uuid4(), img["image_group_id"], world.domain("D"))).fetchone()
        db.execute("RESET ROLE")
        db.execute("SET search_path = public")
        assert got == want and got
        assert cmd["stage"] == "TEMPORARY_CREATED"
        assert db.execute("SELECT * FROM hostile.calls").fetchall() == []
        for t in ("images", "images_to_be_deleted", "move_disk_commands"):
            assert db.execute(sql.SQL("SELECT count(*) AS n FROM hostile.{}").format(
                sql.Identifier(t))).fetchone()["n"] == 0
        assert db.execute("SELECT count(*) AS n FROM public.move_disk_commands").fetchone()["n"] == 1
        db.rollback()


def test_the_database_owner_cannot_gain_more_through_a_builtin_planted_in_public(world) -> None:
    """The role that owns the engine's database (as oVirt's `engine` does) may create in
    ``public`` (PostgreSQL 15: public belongs to pg_database_owner). An exact-type
    ``public.to_jsonb(base_disks)`` or ``public.unnest(uuid[])`` wins over pg_catalog's
    polymorphic ones whatever the path; a SECURITY DEFINER function whose owner has more rights
    than the caller must not run it. Checked by planting them and moving a disk as that role."""
    dbname = world.dsn.rsplit("dbname=", 1)[1]
    with psycopg.connect(world.dsn, row_factory=psycopg.rows.dict_row) as db:
        disk = world.disk("vm1-data")
        db.execute("CREATE ROLE movedisk_mallory NOLOGIN")
        db.execute("GRANT movedisk_engine TO movedisk_mallory")
        db.execute(sql.SQL("ALTER DATABASE {} OWNER TO movedisk_mallory").format(sql.Identifier(dbname)))
        db.execute("SET ROLE movedisk_mallory")
        db.execute("CREATE TABLE public.mallory_calls (what text, as_user name)")
        for sig, body in (
            ("to_jsonb(base_disks)", "RETURN pg_catalog.to_jsonb($1::record)"),
            ("to_jsonb(images)", "RETURN pg_catalog.to_jsonb($1::record)"),
        ):
            db.execute(sql.SQL(
                "CREATE FUNCTION public.{} RETURNS jsonb LANGUAGE plpgsql AS $f$BEGIN "
                "INSERT INTO public.mallory_calls VALUES ({}, current_user); {}; END$f$").format(
                    sql.SQL(sig), sql.Literal(sig), sql.SQL(body)))  # fixed test text
        db.execute("GRANT ALL ON public.mallory_calls TO PUBLIC")
        db.execute("SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)",
                   (disk, world.domain("S"), world.domain("D"))).fetchall()
        db.execute("RESET ROLE")
        calls = db.execute("SELECT * FROM public.mallory_calls").fetchall()
        db.rollback()
    assert calls == [], f"the package ran the database owner's functions: {calls}"


@pytest.fixture(autouse=True)
def _no_leftover_roles(pg_cluster):
    yield
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        for role in ("movedisk_mallory", "movedisk_nobody"):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
