-- Disk listings through all_disks / all_disks_including_snapshots (oVirt all_disks_sp.sql names).

-- GetAllFromDisks: every disk, by its active volume; v_include_temporary => FALSE leaves out
-- the temporary (To_Be_Deleted) disks of disk moves (the column is_temporary tells them apart).
CREATE OR REPLACE FUNCTION GetAllFromDisks(
    v_user_id UUID,
    v_is_filtered BOOLEAN,
    v_include_temporary BOOLEAN DEFAULT TRUE
)
RETURNS SETOF all_disks
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM all_disks
    WHERE v_is_filtered IS NOT TRUE
        AND (v_include_temporary IS NOT FALSE OR NOT all_disks.is_temporary);
END;
$procedure$;

-- GetDiskByDiskId: the disk with that id, by its active volume.
CREATE OR REPLACE FUNCTION GetDiskByDiskId(
    v_disk_id UUID,
    v_user_id UUID,
    v_is_filtered BOOLEAN
)
RETURNS SETOF all_disks
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM all_disks
    WHERE image_group_id = v_disk_id
        AND v_is_filtered IS NOT TRUE;
END;
$procedure$;

-- GetAllFromDisksIncludingSnapshots: every volume of every disk; v_include_temporary => FALSE
-- leaves out the volumes of temporary (To_Be_Deleted) disks.
CREATE OR REPLACE FUNCTION GetAllFromDisksIncludingSnapshots(
    v_user_id UUID,
    v_is_filtered BOOLEAN,
    v_include_temporary BOOLEAN DEFAULT TRUE
)
RETURNS SETOF all_disks_including_snapshots
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM all_disks_including_snapshots
    WHERE v_is_filtered IS NOT TRUE
        AND (v_include_temporary IS NOT FALSE OR NOT all_disks_including_snapshots.is_temporary);
END;
$procedure$;

-- GetDiskAndSnapshotsByDiskId: every volume of the disk with that id.
CREATE OR REPLACE FUNCTION GetDiskAndSnapshotsByDiskId(
    v_disk_id UUID,
    v_user_id UUID,
    v_is_filtered BOOLEAN
)
RETURNS SETOF all_disks_including_snapshots
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM all_disks_including_snapshots
    WHERE image_group_id = v_disk_id
        AND v_is_filtered IS NOT TRUE;
END;
$procedure$;
