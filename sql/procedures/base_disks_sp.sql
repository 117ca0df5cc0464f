-- base_disks: disks (oVirt base_disks_sp.sql names and parameters).

-- InsertBaseDisk: adds a disk.
CREATE OR REPLACE FUNCTION InsertBaseDisk(
    v_disk_id UUID,
    v_wipe_after_delete BOOLEAN,
    v_propagate_errors VARCHAR(32),
    v_disk_alias VARCHAR(50),
    v_disk_description VARCHAR(500),
    v_shareable BOOLEAN,
    v_sgio INTEGER,
    v_disk_storage_type SMALLINT,
    v_cinder_volume_type VARCHAR(255),
    v_disk_content_type SMALLINT,
    v_backup VARCHAR(32),
    v_backup_mode VARCHAR(32)
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.base_disks (
        disk_id,
        wipe_after_delete,
        propagate_errors,
        disk_alias,
        disk_description,
        shareable,
        sgio,
        disk_storage_type,
        cinder_volume_type,
        disk_content_type,
        backup,
        backup_mode
    )
    VALUES (
        v_disk_id,
        v_wipe_after_delete,
        v_propagate_errors,
        v_disk_alias,
        v_disk_description,
        v_shareable,
        v_sgio,
        v_disk_storage_type,
        v_cinder_volume_type,
        v_disk_content_type,
        v_backup,
        v_backup_mode
    );
END;
$procedure$;

-- UpdateBaseDisk: rewrites the properties of a disk.
CREATE OR REPLACE FUNCTION UpdateBaseDisk(
    v_disk_id UUID,
    v_wipe_after_delete BOOLEAN,
    v_propagate_errors VARCHAR(32),
    v_disk_alias VARCHAR(50),
    v_disk_description VARCHAR(500),
    v_shareable BOOLEAN,
    v_sgio INTEGER,
    v_disk_storage_type SMALLINT,
    v_cinder_volume_type VARCHAR(255),
    v_disk_content_type SMALLINT,
    v_backup VARCHAR(32),
    v_backup_mode VARCHAR(32)
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.base_disks
    SET
        wipe_after_delete = v_wipe_after_delete,
        propagate_errors = v_propagate_errors,
        disk_alias = v_disk_alias,
        disk_description = v_disk_description,
        shareable = v_shareable,
        sgio = v_sgio,
        disk_storage_type = v_disk_storage_type,
        cinder_volume_type = v_cinder_volume_type,
        disk_content_type = v_disk_content_type,
        backup = v_backup,
        backup_mode = v_backup_mode
    WHERE disk_id = v_disk_id;
END;
$procedure$;

-- DeleteBaseDisk: removes a disk row (its volumes are removed separately).
CREATE OR REPLACE FUNCTION DeleteBaseDisk(
    v_disk_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.base_disks
    WHERE disk_id = v_disk_id;
END;
$procedure$;

-- GetAllFromBaseDisks: every disk row.
CREATE OR REPLACE FUNCTION GetAllFromBaseDisks()
RETURNS SETOF BASE_DISKS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.base_disks;
END;
$procedure$;

-- GetBaseDiskByBaseDiskId: the disk row with that id.
CREATE OR REPLACE FUNCTION GetBaseDiskByBaseDiskId(
    v_disk_id UUID
)
RETURNS SETOF BASE_DISKS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.base_disks
    WHERE disk_id = v_disk_id;
END;
$procedure$;

-- GetBaseDisksByAlias: the disks with that alias.
CREATE OR REPLACE FUNCTION GetBaseDisksByAlias(
    v_disk_alias VARCHAR(255)
)
RETURNS SETOF BASE_DISKS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.base_disks
    WHERE disk_alias = v_disk_alias;
END;
$procedure$;
