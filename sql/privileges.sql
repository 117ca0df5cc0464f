-- Privileges, applied at the end of every deploy (the roles come from sql/roles.sql).
--   movedisk_engine: the engine's data access layer; may only EXECUTE functions.
--   movedisk_dba:    read-only; may read the views and run the verification functions
--                    (granted next to their definitions in sql/procedures/).
-- Nothing is granted to PUBLIC.

REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO movedisk_engine, movedisk_dba;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA public FROM PUBLIC;

GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO movedisk_engine;
GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA public TO movedisk_engine;

-- The DBA reads every view of the package (views run with their owner's rights).
DO $views$
DECLARE
    v regclass;
BEGIN
    FOR v IN
        SELECT c.oid::regclass FROM pg_class AS c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO movedisk_dba', v);
    END LOOP;
END
$views$;
