-- Compensation records (oVirt business_entity_snapshot_sp.sql names and parameters).

-- insert_entity_snapshot: records the state of an entity before a command changes it.
CREATE OR REPLACE FUNCTION insert_entity_snapshot(
    v_id UUID,
    v_command_id UUID,
    v_command_type VARCHAR(256),
    v_entity_id VARCHAR(128),
    v_entity_type VARCHAR(128),
    v_entity_snapshot TEXT,
    v_snapshot_class VARCHAR(128),
    v_snapshot_type INTEGER,
    v_insertion_order INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.business_entity_snapshot (
        id,
        command_id,
        command_type,
        entity_id,
        entity_type,
        entity_snapshot,
        snapshot_class,
        snapshot_type,
        insertion_order
    )
    VALUES (
        v_id,
        v_command_id,
        v_command_type,
        v_entity_id,
        v_entity_type,
        v_entity_snapshot,
        v_snapshot_class,
        v_snapshot_type,
        v_insertion_order
    );
END;
$procedure$;

-- get_entity_snapshot_by_command_id: the compensation records of a command, in insertion order.
CREATE OR REPLACE FUNCTION get_entity_snapshot_by_command_id(
    v_command_id UUID
)
RETURNS SETOF BUSINESS_ENTITY_SNAPSHOT
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.business_entity_snapshot
    WHERE command_id = v_command_id
    ORDER BY insertion_order;
END;
$procedure$;

-- get_entity_snapshot_by_id: one compensation record.
CREATE OR REPLACE FUNCTION get_entity_snapshot_by_id(
    v_id UUID
)
RETURNS SETOF BUSINESS_ENTITY_SNAPSHOT
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.business_entity_snapshot
    WHERE id = v_id;
END;
$procedure$;

-- delete_entity_snapshot_by_command_id: forgets the compensation records of a command.
CREATE OR REPLACE FUNCTION delete_entity_snapshot_by_command_id(
    v_command_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.business_entity_snapshot
    WHERE command_id = v_command_id;
END;
$procedure$;
