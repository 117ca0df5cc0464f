"""No role gains more than it was granted: an engine role that owns its database (so it may
create objects in ``public``) plants shadowing functions, operators and aggregates and calls
the package's functions; it stays what it was."""

from __future__ import annotations

from typing import Any, Callable

import psycopg
import pytest
from psycopg.rows import dict_row

from feature_rows import move_phase1, setup

# What the attacker plants in public: functions with exact types that would beat
# pg_catalog's polymorphic ones, an operator and an aggregate for the package's types. Each
# would make the role a superuser, record that it ran, and return something harmless.
ATTACK = """
CREATE TABLE public.attack_ran (what TEXT);
CREATE FUNCTION public.escalate(what TEXT) RETURNS BOOLEAN LANGUAGE plpgsql AS $a$
BEGIN
    INSERT INTO public.attack_ran VALUES (what);
    BEGIN
        EXECUTE 'ALTER ROLE evil_engine SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN
        RETURN false;
    END;
    RETURN true;
END $a$;
CREATE FUNCTION public.to_jsonb(public.base_disks) RETURNS jsonb LANGUAGE plpgsql AS $a$
BEGIN PERFORM public.escalate('to_jsonb(base_disks)'); RETURN pg_catalog.to_jsonb($1::text); END $a$;
CREATE FUNCTION public.to_jsonb(public.images) RETURNS jsonb LANGUAGE plpgsql AS $a$
BEGIN PERFORM public.escalate('to_jsonb(images)'); RETURN pg_catalog.to_jsonb($1::text); END $a$;
CREATE FUNCTION public.jsonb_build_object(TEXT, UUID, TEXT, TEXT) RETURNS jsonb
LANGUAGE plpgsql AS $a$
BEGIN PERFORM public.escalate('jsonb_build_object'); RETURN '{}'::jsonb; END $a$;
CREATE FUNCTION public.uuid_eq_evil(UUID, UUID) RETURNS BOOLEAN LANGUAGE plpgsql AS $a$
BEGIN PERFORM public.escalate('operator ='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $a$;
CREATE OPERATOR public.= (LEFTARG = UUID, RIGHTARG = UUID, FUNCTION = public.uuid_eq_evil);
CREATE FUNCTION public.evil_sfunc(UUID[], UUID) RETURNS UUID[] LANGUAGE plpgsql AS $a$
BEGIN PERFORM public.escalate('aggregate array_agg'); RETURN $1 || $2; END $a$;
CREATE AGGREGATE public.array_agg(UUID) (SFUNC = public.evil_sfunc, STYPE = UUID[]);
CREATE FUNCTION public.count(UUID) RETURNS BIGINT LANGUAGE sql AS 'SELECT 0::bigint';
CREATE TEMP TABLE images (image_guid UUID);
"""


@pytest.fixture
def engine_owned(new_db: Callable[..., str], pg_cluster: Any) -> str:
    """A deployed database owned by the engine's login role (a member of movedisk_engine),
    as oVirt's ``engine`` owns its database."""
    dsn = new_db()
    dbname = dsn.rsplit("dbname=", 1)[1]
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(
            "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'evil_engine') "
            "THEN CREATE ROLE evil_engine LOGIN; END IF; END$$"
        )
        conn.execute("ALTER ROLE evil_engine NOSUPERUSER")
        conn.execute("GRANT movedisk_engine TO evil_engine")
        conn.execute(f'ALTER DATABASE "{dbname}" OWNER TO evil_engine')
    return dsn


def test_an_engine_role_owning_its_database_gains_nothing(engine_owned: str, pg_cluster: Any) -> None:
    dbname = engine_owned.rsplit("dbname=", 1)[1]
    as_engine = f"host=127.0.0.1 port={pg_cluster.port} dbname={dbname} user=evil_engine"
    with psycopg.connect(engine_owned, row_factory=dict_row) as conn:
        s = setup(conn)
        conn.commit()
    with psycopg.connect(as_engine, row_factory=dict_row) as conn:
        conn.execute(ATTACK)  # allowed: the role owns the database, so its public schema
        conn.commit()
        # Every path through the package's functions that would meet a shadow: the move's
        # phase 1 (to_jsonb of base_disks and images rows, jsonb_build_object, uuid =,
        # array_agg), the lookups and the verification.
        move_phase1(conn, s)
        conn.execute("SELECT * FROM GetImageByImageGuid(%s)", (s.disk.images[-1],)).fetchall()
        conn.execute("SELECT * FROM GetAllFromDisks(NULL, FALSE)").fetchall()
        conn.execute("SELECT * FROM GetImagesToBeDeletedBySrcImageGroupId(%s)", (s.disk.disk_id,))
        conn.commit()
        ran = [r["what"] for r in conn.execute("SELECT what FROM attack_ran").fetchall()]
        superuser = conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'evil_engine'"
        ).fetchone()["rolsuper"]
    assert superuser is False
    assert ran == []  # no shadow was ever called by a package function


def test_the_shadows_would_have_worked_on_the_old_search_path(engine_owned: str, pg_cluster: Any) -> None:
    """The attack is real: the same to_jsonb shadow is picked up by a function that keeps
    public on its search_path (as every package function did), so the test above can fail."""
    dbname = engine_owned.rsplit("dbname=", 1)[1]
    as_engine = f"host=127.0.0.1 port={pg_cluster.port} dbname={dbname} user=evil_engine"
    with psycopg.connect(engine_owned, row_factory=dict_row) as conn:
        setup(conn)
        conn.execute("GRANT SELECT ON base_disks TO evil_engine")
        conn.commit()
    with psycopg.connect(as_engine, row_factory=dict_row) as conn:
        conn.execute(ATTACK)
        conn.execute(
            "CREATE FUNCTION old_style(v_id UUID) RETURNS jsonb LANGUAGE plpgsql "
            "SET search_path = public, pg_temp AS $f$ BEGIN "
            "RETURN (SELECT to_jsonb(b) FROM base_disks AS b LIMIT 1); END $f$"
        )
        conn.execute("SELECT old_style(NULL)")
        ran = [r["what"] for r in conn.execute("SELECT what FROM attack_ran").fetchall()]
        conn.rollback()
    assert ran == ["to_jsonb(base_disks)"]


def test_deploy_changes_no_privilege_it_did_not_create(new_db) -> None:
    """Deploy into a database where others hold privileges: none of theirs changes."""
    from movedisk.deploy import deploy

    dsn = new_db(deployed=False)
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        conn.execute("CREATE TABLE engine_own (x INT)")
        conn.execute("GRANT SELECT ON engine_own TO PUBLIC")
        conn.execute("CREATE FUNCTION engine_fn() RETURNS INT LANGUAGE sql AS 'SELECT 1'")
        conn.commit()
        acl = """
        SELECT (SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public') AS schema,
               (SELECT relacl::text FROM pg_class WHERE relname = 'engine_own') AS tbl,
               (SELECT proacl::text FROM pg_proc WHERE proname = 'engine_fn') AS fn
        """
        before = conn.execute(acl).fetchone()
        deploy(conn)
        conn.commit()
        after = conn.execute(acl).fetchone()
    assert after["tbl"] == before["tbl"] and after["fn"] == before["fn"]
    # The schema gains USAGE for the package's own roles, and PUBLIC keeps its USAGE.
    assert after["schema"].startswith(before["schema"].rstrip("}") if before["schema"] else "{")
    assert "=U/" in after["schema"]


def test_a_view_that_would_bind_a_planted_aggregate_is_refused(engine_owned: str, pg_cluster: Any) -> None:
    """Views bind what they call when deploy creates them: an aggregate planted in public
    with an exact type would win over pg_catalog's; deploy refuses and changes nothing."""
    from movedisk.deploy import catalog_snapshot, deploy
    from movedisk.errors import DeployError

    dbname = engine_owned.rsplit("dbname=", 1)[1]
    as_engine = f"host=127.0.0.1 port={pg_cluster.port} dbname={dbname} user=evil_engine"
    with psycopg.connect(as_engine) as conn:
        conn.execute(
            "CREATE FUNCTION public.evil_vsfunc(VARCHAR[], VARCHAR) RETURNS VARCHAR[] "
            "LANGUAGE sql AS 'SELECT $1'"
        )
        conn.execute(
            "CREATE AGGREGATE public.array_agg(VARCHAR) (SFUNC = public.evil_vsfunc, STYPE = VARCHAR[])"
        )
    with psycopg.connect(engine_owned, row_factory=dict_row) as conn:
        # vms_for_disk_view (array_agg of VM names) is to be re-created, as after a change.
        conn.execute(
            "UPDATE package_objects SET statement_hash = 'changed' "
            "WHERE object_identity = 'public.vms_for_disk_view'"
        )
        conn.commit()
        before = catalog_snapshot(conn)
        conn.commit()
        with pytest.raises(DeployError) as err:
            deploy(conn)
        conn.rollback()
        assert catalog_snapshot(conn) == before
    assert "vms_for_disk_view calls function public.array_agg(character varying)" in err.value.message
