-- package_objects: the functions, views and tables the package's files define in this
-- database, so that deploy drops exactly what left the files and nothing else.
CREATE TABLE package_objects (
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
