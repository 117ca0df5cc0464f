-- The package's roles, created (when missing) at the start of every deploy, so that
-- upgrade scripts and sql/procedures/ may grant to them.
--   movedisk_owner:  owns the package's functions (SECURITY DEFINER runs with its rights);
--                    not a superuser, no login, holds only DML on the package's tables and
--                    SELECT on its views (sql/privileges.sql).
--   movedisk_engine: the engine's data access layer; may only EXECUTE functions.
--   movedisk_dba:    read-only; reads the views and runs the verification functions.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'movedisk_owner') THEN
        CREATE ROLE movedisk_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
    IF EXISTS (
        SELECT 1 FROM pg_catalog.pg_roles
        WHERE rolname = 'movedisk_owner'
          AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication)
    ) THEN
        RAISE EXCEPTION 'role movedisk_owner has more than it needs'
        USING DETAIL = 'it owns SECURITY DEFINER functions: it must not be a superuser or '
        'create roles or databases, replicate, or bypass row security',
        ERRCODE = '42501';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'movedisk_engine') THEN
        CREATE ROLE movedisk_engine NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'movedisk_dba') THEN
        CREATE ROLE movedisk_dba NOLOGIN;
    END IF;
END
$roles$;
