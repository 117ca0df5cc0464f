-- Privileges, applied at the end of every deploy, on the package's own objects only (those
-- recorded in package_objects): every other object of the database, the schema and PUBLIC
-- keep the privileges they had.
--   movedisk_owner:  owns the functions; DML on the package's tables, SELECT on its views.
--   movedisk_engine: the engine's data access layer; may only EXECUTE the functions.
--   movedisk_dba:    read-only; reads the views and runs the verification functions
--                    (granted next to their definitions in sql/procedures/).
-- PUBLIC's EXECUTE, which CREATE FUNCTION gives, is revoked from the functions the package
-- created (not from an engine's function the package replaced: that one keeps its grants).

GRANT USAGE ON SCHEMA public TO movedisk_owner, movedisk_engine, movedisk_dba;

DO $grants$
DECLARE
    r record;
    routines text;
BEGIN
    FOR r IN
        SELECT o.object_type, o.object_identity
        FROM public.package_objects AS o
        WHERE o.object_type IN ('function', 'view', 'table')
        ORDER BY o.object_type, o.object_identity
    LOOP
        IF r.object_type = 'function' THEN
            EXECUTE pg_catalog.format(
                'ALTER ROUTINE %s OWNER TO movedisk_owner', r.object_identity::regprocedure
            );
        ELSIF r.object_type = 'view' THEN
            EXECUTE pg_catalog.format(
                'GRANT SELECT ON %s TO movedisk_owner, movedisk_dba', r.object_identity::regclass
            );
        ELSE
            EXECUTE pg_catalog.format(
                'GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO movedisk_owner',
                r.object_identity::regclass
            );
        END IF;
    END LOOP;
    -- The functions' REVOKE and GRANT as one statement each, for all of them at once (one
    -- statement per function made them a quarter of a fresh deploy's server time).
    SELECT pg_catalog.string_agg(
        o.object_identity::regprocedure::text, ', ' ORDER BY o.object_identity
    )
    INTO routines
    FROM public.package_objects AS o
    WHERE o.object_type = 'function' AND NOT o.adopted;
    IF routines IS NOT NULL THEN
        EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', routines);
    END IF;
    SELECT pg_catalog.string_agg(
        o.object_identity::regprocedure::text, ', ' ORDER BY o.object_identity
    )
    INTO routines
    FROM public.package_objects AS o
    INNER JOIN pg_catalog.pg_proc AS p ON p.oid = o.object_identity::regprocedure
    -- (not a trigger function: only its trigger calls it)
    WHERE o.object_type = 'function' AND p.prorettype <> 'pg_catalog.trigger'::pg_catalog.regtype;
    IF routines IS NOT NULL THEN
        EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO movedisk_engine', routines);
    END IF;
    -- The sequences behind the package tables' serial columns.
    FOR r IN
        SELECT s.oid::regclass AS seq
        FROM public.package_objects AS o
        JOIN pg_catalog.pg_depend AS d
            ON d.refobjid = o.object_identity::regclass AND d.refclassid = 'pg_class'::regclass
            AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        JOIN pg_catalog.pg_class AS s ON s.oid = d.objid AND s.relkind = 'S'
        WHERE o.object_type = 'table'
    LOOP
        EXECUTE pg_catalog.format('GRANT USAGE, SELECT ON SEQUENCE %s TO movedisk_owner', r.seq);
    END LOOP;
    -- A view runs with its owner's rights: an engine's view that the package extends stays
    -- the engine's, and its owner may read what the package's part of it reads.
    FOR r IN
        SELECT DISTINCT v.relowner::regrole AS owner, t.oid::regclass AS rel
        FROM public.package_objects AS o
        JOIN pg_catalog.pg_class AS v
            ON o.object_type = 'view' AND v.oid = o.object_identity::regclass
        JOIN pg_catalog.pg_rewrite AS rw ON rw.ev_class = v.oid
        JOIN pg_catalog.pg_depend AS d
            ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
            AND d.refclassid = 'pg_class'::regclass
        JOIN pg_catalog.pg_class AS t
            ON t.oid = d.refobjid AND t.oid <> v.oid AND t.relkind IN ('r', 'v', 'p')
        WHERE t.relowner <> v.relowner
          AND NOT pg_catalog.has_table_privilege(v.relowner, t.oid, 'SELECT')
    LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON %s TO %s', r.rel, r.owner);
    END LOOP;
END
$grants$;
