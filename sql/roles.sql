-- The package's roles, created (when missing) at the start of every deploy, so that
-- upgrade scripts and sql/procedures/ may grant to them.
--   movedisk_engine: the engine's data access layer; may only EXECUTE functions.
--   movedisk_dba:    read-only; reads the views and runs the verification functions.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'movedisk_engine') THEN
        CREATE ROLE movedisk_engine NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'movedisk_dba') THEN
        CREATE ROLE movedisk_dba NOLOGIN;
    END IF;
END
$roles$;
