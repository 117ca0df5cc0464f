"""Deploy into a database that holds other objects (an engine's): the package touches only
what its files define and records, every foreign function, view, trigger and row stays."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from movedisk.deploy import deploy
from movedisk.sqlfiles import SqlTree, sql_dir

PACKAGE_ONLY_TABLES = ("images_to_be_deleted", "package_objects")

# An engine's own objects, as an oVirt database has them: its functions (one named like no
# package function, one trigger function), a trigger on images that calls it, its own log
# table and schema_version rows, the newest of them current.
ENGINE = """
CREATE TABLE engine_log (msg TEXT);
CREATE FUNCTION fn_image_deleted() RETURNS TRIGGER LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO engine_log VALUES ('deleted ' || OLD.image_guid); RETURN OLD; END $f$;
CREATE TRIGGER delete_disk_image_dynamic_for_image BEFORE DELETE ON images
    FOR EACH ROW EXECUTE FUNCTION fn_image_deleted();
CREATE FUNCTION GetEngineAnswer(v_x INTEGER) RETURNS INTEGER LANGUAGE plpgsql AS $f$
BEGIN RETURN v_x + 1; END $f$;
COMMENT ON FUNCTION GetEngineAnswer(INTEGER) IS 'the engine''s own';
INSERT INTO schema_version (version, script, checksum, installed_by, state, current) VALUES
    ('04050300', 'upgrade/04_05_0300_something.sql', 'a1', 'engine', 'INSTALLED', false),
    ('04050310', 'upgrade/04_05_0310_other.sql', 'b2', 'engine', 'INSTALLED', true);
INSERT INTO engine_log VALUES ('engine row');
-- The engine's version of a lookup the package extends with a defaulted last parameter.
CREATE FUNCTION GetAllFromDisks(v_user_id UUID, v_is_filtered BOOLEAN) RETURNS SETOF base_disks
LANGUAGE plpgsql AS $f$ BEGIN RETURN QUERY SELECT * FROM base_disks; END $f$;
"""

FOREIGN = """
SELECT 'function' AS kind, p.oid::regprocedure::text AS name,
       pg_get_functiondef(p.oid) || coalesce(p.proacl::text, '') || p.proowner::regrole::text
       || coalesce(obj_description(p.oid, 'pg_proc'), '') AS definition
FROM pg_proc AS p
WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('fn_image_deleted', 'getengineanswer')
UNION ALL
SELECT 'view', c.relname::text, pg_get_viewdef(c.oid) || coalesce(c.relacl::text, '')
FROM pg_class AS c WHERE c.relnamespace = 'public'::regnamespace AND c.relname = 'engine_disks'
UNION ALL
SELECT 'trigger', t.tgname::text, pg_get_triggerdef(t.oid) FROM pg_trigger AS t WHERE NOT t.tgisinternal
  -- (not the package's own trigger on its own table images_to_be_deleted)
  AND t.tgrelid IS DISTINCT FROM to_regclass('public.images_to_be_deleted')
UNION ALL
SELECT 'schema_version', v.script::text, v.version || v.checksum || v.state || v.current::text
FROM schema_version AS v WHERE v.script LIKE 'upgrade/04_%'
UNION ALL
SELECT 'engine_log', e.msg, '' FROM engine_log AS e
UNION ALL
SELECT 'schema', n.nspname::text, (
    -- what others hold on the schema (the package adds USAGE for its own roles only)
    SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(n.nspacl) AS a
    WHERE a::text NOT LIKE 'movedisk\\_%%'
) FROM pg_namespace AS n WHERE n.nspname = 'public'
ORDER BY 1, 2
"""


def foreign(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(FOREIGN).fetchall()


@pytest.fixture
def engine_dsn(new_db) -> str:
    """A database as an engine has it before the feature: the engine's tables (the
    package's stand-ins for them), schema_version with the engine's rows, and its own
    functions and trigger; no package function, view or record."""
    dsn = new_db(deployed=False)
    tree = SqlTree.load()
    with psycopg.connect(dsn) as conn:
        for f in tree.tables:
            if not any(t in f.name for t in PACKAGE_ONLY_TABLES):
                conn.execute(f.text)
        conn.execute(ENGINE)
    return dsn


def test_deploy_redeploy_and_removal_leave_every_foreign_object_and_row(
    engine_dsn: str, tmp_path: Path
) -> None:
    untouched = foreign(engine_dsn)
    assert len(untouched) == 7
    with psycopg.connect(engine_dsn, row_factory=dict_row) as conn:
        first = deploy(conn)
        conn.commit()
        assert first.mode == "upgrade"
        # The engine's GetAllFromDisks(uuid, boolean) gave way to the package's, which adds a
        # defaulted parameter: the engine's two-argument calls are not ambiguous.
        assert first.replaced == [
            "function public.getallfromdisks(uuid,boolean) by "
            "public.getallfromdisks(uuid,boolean,boolean)"
        ]
        conn.execute("SELECT * FROM GetAllFromDisks(NULL, FALSE)").fetchall()
        assert first.upgrades_applied == [f.name for f in SqlTree.load().upgrades]
        assert foreign(engine_dsn) == untouched
        # The engine's current row is still the one its upgrade tool reads.
        current = conn.execute("SELECT script FROM schema_version WHERE current").fetchall()
        assert current == [{"script": "upgrade/04_05_0310_other.sql"}]
        # A view of the engine's over a package view, and the lookups answering through it.
        conn.execute("CREATE VIEW engine_disks AS SELECT disk_id, disk_alias FROM all_disks")
        conn.commit()
        assert conn.execute("SELECT count(*) AS n FROM engine_disks").fetchone() == {"n": 0}
        assert conn.execute("SELECT GetEngineAnswer(1) AS a").fetchone() == {"a": 2}
    with_view = foreign(engine_dsn)

    with psycopg.connect(engine_dsn, row_factory=dict_row) as conn:
        second = deploy(conn)
        conn.commit()
    assert second.changes == [] and second.dropped == []
    assert second.views_unchanged == second.views  # no view re-created, none locked
    assert foreign(engine_dsn) == with_view

    # A function leaves the files: dropped on the next deploy, and nothing else.
    copy = tmp_path / "sql"
    shutil.copytree(sql_dir(), copy)
    (copy / "procedures" / "zz_extra_sp.sql").write_text(
        "-- ExtraAnswer: forty-two.\n"
        "CREATE OR REPLACE FUNCTION ExtraAnswer()\n"
        "RETURNS INT LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER\n"
        "SET search_path = pg_catalog, pg_temp\n"
        "AS $procedure$ BEGIN RETURN 42; END; $procedure$;\n"
    )
    with psycopg.connect(engine_dsn, row_factory=dict_row) as conn:
        deploy(conn, tree=SqlTree.load(copy))
        conn.commit()
        assert conn.execute("SELECT ExtraAnswer() AS a").fetchone() == {"a": 42}
    (copy / "procedures" / "zz_extra_sp.sql").unlink()
    with psycopg.connect(engine_dsn, row_factory=dict_row) as conn:
        third = deploy(conn, tree=SqlTree.load(copy))
        conn.commit()
        assert conn.execute("SELECT to_regproc('extraanswer') AS p").fetchone() == {"p": None}
        # The engine's trigger still fires on its own function.
        conn.execute("DELETE FROM images WHERE false")
    assert third.dropped == ["function public.extraanswer()"]
    assert foreign(engine_dsn) == with_view


def test_check_is_up_to_date_after_deploying_into_an_engine_database(engine_dsn: str) -> None:
    with psycopg.connect(engine_dsn, row_factory=dict_row) as conn:
        deploy(conn)
        conn.commit()
        before = foreign(engine_dsn)
        report = deploy(conn, dry_run=True)
    assert report.changes == []
    assert foreign(engine_dsn) == before


def test_a_package_view_that_must_be_dropped_is_refused_when_the_engine_depends_on_it(
    engine_dsn: str, tmp_path: Path
) -> None:
    from movedisk.errors import DeployError

    with psycopg.connect(engine_dsn, row_factory=dict_row) as conn:
        deploy(conn)
        conn.execute("CREATE VIEW engine_usage AS SELECT usage_kind FROM storage_usage_items_view")
        conn.commit()
    before = foreign(engine_dsn)
    copy = tmp_path / "sql"
    shutil.copytree(sql_dir(), copy)
    views = copy / "procedures" / "quota_usage_views.sql"
    assert "usage_kind" in views.read_text()
    # A column renamed: CREATE OR REPLACE VIEW cannot do it, the view would have to go, and
    # the engine's view over it with it. Deploy refuses, naming it, and changes nothing.
    views.write_text(views.read_text().replace("usage_kind", "usage_kind_renamed"))
    with psycopg.connect(engine_dsn, row_factory=dict_row) as conn:
        with pytest.raises(DeployError) as err:
            deploy(conn, tree=SqlTree.load(copy))
    assert "objects the package does not own depend on it: view public.engine_usage" in err.value.message
    assert foreign(engine_dsn) == before
