-- Disk listings through all_disks / all_disks_including_snapshots (oVirt all_disks_sp.sql names).

-- GetAllFromDisks: every disk, by its active volume; v_include_temporary => FALSE leaves out
-- the temporary (To_Be_Deleted) disks of disk moves (the column is_temporary tells them apart).
CREATE OR REPLACE FUNCTION GetAllFromDisks(
    v_user_id UUID,
    v_is_filtered BOOLEAN,
    v_include_temporary BOOLEAN DEFAULT TRUE
)
RETURNS SETOF ALL_DISKS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.all_disks
    WHERE v_is_filtered IS NOT TRUE
        AND (v_include_temporary IS NOT FALSE OR NOT all_disks.is_temporary);
END;
$procedure$;

-- GetDiskByDiskId: the disk with that id, by its active volume.
-- The view de-duplicates by volume (DISTINCT ON image_guid) and aggregates storage per
-- volume: a filter on the disk id cannot reach the indexes below them, an equality on the
-- volume id can. So the disk's volumes are found by index first, then read one by one.
CREATE OR REPLACE FUNCTION GetDiskByDiskId(
    v_disk_id UUID,
    v_user_id UUID,
    v_is_filtered BOOLEAN
)
RETURNS SETOF ALL_DISKS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_image_guid UUID;
BEGIN
    IF v_is_filtered IS TRUE THEN
        RETURN;
    END IF;
    FOR v_image_guid IN
        SELECT i.image_guid FROM public.images AS i
        WHERE i.image_group_id = v_disk_id AND i.active
        ORDER BY i.image_guid
    LOOP
        RETURN QUERY
        SELECT * FROM public.all_disks
        WHERE all_disks.image_guid = v_image_guid;
    END LOOP;
END;
$procedure$;

-- GetAllFromDisksIncludingSnapshots: every volume of every disk; v_include_temporary => FALSE
-- leaves out the volumes of temporary (To_Be_Deleted) disks.
CREATE OR REPLACE FUNCTION GetAllFromDisksIncludingSnapshots(
    v_user_id UUID,
    v_is_filtered BOOLEAN,
    v_include_temporary BOOLEAN DEFAULT TRUE
)
RETURNS SETOF ALL_DISKS_INCLUDING_SNAPSHOTS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.all_disks_including_snapshots
    WHERE v_is_filtered IS NOT TRUE
        AND (v_include_temporary IS NOT FALSE OR NOT all_disks_including_snapshots.is_temporary);
END;
$procedure$;

-- GetDiskAndSnapshotsByDiskId: every volume of the disk with that id (read volume by volume,
-- as GetDiskByDiskId does, so that the lookups use the indexes).
CREATE OR REPLACE FUNCTION GetDiskAndSnapshotsByDiskId(
    v_disk_id UUID,
    v_user_id UUID,
    v_is_filtered BOOLEAN
)
RETURNS SETOF ALL_DISKS_INCLUDING_SNAPSHOTS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_image_guid UUID;
BEGIN
    IF v_is_filtered IS TRUE THEN
        RETURN;
    END IF;
    FOR v_image_guid IN
        SELECT i.image_guid FROM public.images AS i
        WHERE i.image_group_id = v_disk_id
        ORDER BY i.image_guid
    LOOP
        RETURN QUERY
        SELECT * FROM public.all_disks_including_snapshots AS a
        WHERE a.image_guid = v_image_guid;
    END LOOP;
END;
$procedure$;
