-- 0003: package_objects, the record of what the package owns (deploy drops only those of
-- its objects that left the files). The same table as sql/tables/0950_package_objects.sql.
-- A new, empty table: no existing row is rewritten, no existing table is locked. Deploy runs
-- every script under its own lock_timeout (movedisk deploy --lock-timeout); a SET here would
-- override the operator's choice, so the script sets none.
-- squawk-ignore-file require-lock-timeout
SET LOCAL statement_timeout = '60s';

CREATE TABLE IF NOT EXISTS package_objects (
    object_type TEXT NOT NULL,
    object_identity TEXT NOT NULL,
    source_file TEXT NOT NULL,
    statement_hash TEXT,
    definition_hash TEXT,
    adopted BOOLEAN NOT NULL DEFAULT FALSE,
    _update_date TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_package_objects PRIMARY KEY (object_type, object_identity),
    CONSTRAINT ck_package_objects_type CHECK (object_type IN ('function', 'view', 'table'))
);

COMMENT ON TABLE package_objects IS
'What the movedisk package owns in this database: deploy drops a function or view that '
'left its files only when it is recorded here, and never touches anything else.';
COMMENT ON COLUMN package_objects.object_type IS
'function (procedures too), view or table.';
COMMENT ON COLUMN package_objects.object_identity IS
'Schema-qualified name; for a routine with its argument types, as DROP FUNCTION takes it.';
COMMENT ON COLUMN package_objects.source_file IS
'The file under sql/ whose statement defined the object last.';
COMMENT ON COLUMN package_objects.statement_hash IS
'SHA-256 of that statement: an unchanged view is not re-created (no lock on its readers).';
COMMENT ON COLUMN package_objects.definition_hash IS
'SHA-256 of the definition the server keeps (pg_get_viewdef): a view changed by hand is re-created.';
COMMENT ON COLUMN package_objects.adopted IS
'The object existed before the package defined it (an engine view or function the feature '
'extends): the package replaces it but never drops it.';

-- Release 1's deploy revoked USAGE on schema public from PUBLIC, which took it from every
-- role of the database. Deploy no longer touches privileges it did not create; give it
-- back where that deploy ran: the package's own database (no other tool's schema_version
-- rows), where PUBLIC lacks it.
DO $public_usage$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM public.schema_version AS v
        WHERE v.script !~ '^upgrade/[0-9]{4}_[a-z0-9_]+\.sql$'
    ) AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_namespace AS n
        CROSS JOIN LATERAL pg_catalog.aclexplode(
            coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))
        ) AS a
        WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'USAGE'
    ) THEN
        GRANT USAGE ON SCHEMA public TO PUBLIC;
    END IF;
END
$public_usage$;
