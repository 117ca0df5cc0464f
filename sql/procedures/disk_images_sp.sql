-- Volume lookups through images_storage_domain_view (oVirt disk_images_sp.sql names).

-- GetImageByImageGuid: the volume with that guid, with its disk, storage domain and
-- statistics (oVirt 4.5: vm_images_view rows, so a volume without disk_image_dynamic is not found).
CREATE OR REPLACE FUNCTION GetImageByImageGuid(
    v_image_guid UUID
)
RETURNS SETOF VM_IMAGES_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.vm_images_view WHERE image_guid = v_image_guid;
END;
$procedure$;

-- GetVmImageByImageGuid: an active volume, one row with all its storage domains listed.
CREATE OR REPLACE FUNCTION GetVmImageByImageGuid(
    v_image_guid UUID
)
RETURNS SETOF VM_IMAGES_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.vm_images_view
    WHERE image_guid = v_image_guid;
END;
$procedure$;

-- GetSnapshotByGuid: the volume with that guid, one row per domain holding it.
CREATE OR REPLACE FUNCTION GetSnapshotByGuid(
    v_image_guid UUID
)
RETURNS SETOF IMAGES_STORAGE_DOMAIN_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.images_storage_domain_view
    WHERE image_guid = v_image_guid;
END;
$procedure$;

-- GetAncestralImageByImageGuid: the base volume of the chain that ends at that volume.
CREATE OR REPLACE FUNCTION GetAncestralImageByImageGuid(
    v_image_guid UUID,
    v_user_id UUID,
    v_is_filtered BOOLEAN
)
RETURNS SETOF IMAGES_STORAGE_DOMAIN_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_base UUID;
BEGIN
    -- The chain is walked on images (by primary key) first, then the view is read by that id:
    -- joining the recursive walk to the view let the planner scan every volume.
    WITH RECURSIVE chain (image_guid, parentid) AS (
        SELECT images.image_guid, images.parentid
        FROM public.images
        WHERE images.image_guid = v_image_guid
        UNION ALL
        SELECT images.image_guid, images.parentid
        FROM public.images
        INNER JOIN chain ON images.image_guid = chain.parentid
    )
    SELECT chain.image_guid INTO v_base
    FROM chain
    WHERE chain.parentid = '00000000-0000-0000-0000-000000000000'
    LIMIT 1;
    RETURN QUERY
    SELECT * FROM public.images_storage_domain_view
    WHERE image_guid = v_base
        AND v_is_filtered IS NOT TRUE;
END;
$procedure$;

-- GetSnapshotsByStorageDomainId: every volume on a storage domain.
CREATE OR REPLACE FUNCTION GetSnapshotsByStorageDomainId(
    v_storage_domain_id UUID
)
RETURNS SETOF IMAGES_STORAGE_DOMAIN_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.images_storage_domain_view
    WHERE storage_id = v_storage_domain_id;
END;
$procedure$;

-- GetSnapshotByParentGuid: the volumes whose parent is that volume.
CREATE OR REPLACE FUNCTION GetSnapshotByParentGuid(
    v_parent_guid UUID
)
RETURNS SETOF IMAGES_STORAGE_DOMAIN_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.images_storage_domain_view
    WHERE parentid = v_parent_guid;
END;
$procedure$;

-- GetSnapshotByLeafGuid: the chain from that volume up to its base volume, within its disk.
CREATE OR REPLACE FUNCTION GetSnapshotByLeafGuid(
    v_image_guid UUID
)
RETURNS SETOF IMAGES_STORAGE_DOMAIN_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_chain UUID[];
    v_volume UUID;
BEGIN
    -- The chain is walked on images (by primary key) first, then the view is read by those ids:
    -- walking the view itself let the planner scan every volume.
    WITH RECURSIVE chain (image_guid, parentid, image_group_id, depth) AS (
        SELECT images.image_guid, images.parentid, images.image_group_id, 0
        FROM public.images
        WHERE images.image_guid = v_image_guid
        UNION ALL
        SELECT images.image_guid, images.parentid, images.image_group_id, chain.depth + 1
        FROM public.images
        INNER JOIN chain
            ON images.image_guid = chain.parentid
                AND images.image_group_id = chain.image_group_id
    )
    SELECT array_agg(chain.image_guid ORDER BY chain.depth) INTO v_chain FROM chain;
    -- Volume by volume, leaf first: an equality keeps one cached plan (= ANY(array) was
    -- planned anew on every call, ~2 ms of a 3 ms lookup at 1M volumes).
    FOREACH v_volume IN ARRAY coalesce(v_chain, '{}') LOOP
        RETURN QUERY
        SELECT * FROM public.images_storage_domain_view
        WHERE image_guid = v_volume;
    END LOOP;
END;
$procedure$;

-- GetSnapshotsByVmSnapshotId: the volumes of a VM snapshot.
CREATE OR REPLACE FUNCTION GetSnapshotsByVmSnapshotId(
    v_vm_snapshot_id UUID
)
RETURNS SETOF IMAGES_STORAGE_DOMAIN_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.images_storage_domain_view
    WHERE vm_snapshot_id = v_vm_snapshot_id;
END;
$procedure$;

-- GetSnapshotsByImageGroupId: every volume of a disk.
CREATE OR REPLACE FUNCTION GetSnapshotsByImageGroupId(
    v_image_group_id UUID
)
RETURNS SETOF IMAGES_STORAGE_DOMAIN_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.images_storage_domain_view
    WHERE image_group_id = v_image_group_id;
END;
$procedure$;

-- GetDiskSnapshotForVmSnapshot: the volume of a disk in a VM snapshot.
CREATE OR REPLACE FUNCTION GetDiskSnapshotForVmSnapshot(
    v_image_group_id UUID,
    v_vm_snapshot_id UUID
)
RETURNS SETOF IMAGES_STORAGE_DOMAIN_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.images_storage_domain_view
    WHERE image_group_id = v_image_group_id
        AND vm_snapshot_id = v_vm_snapshot_id;
END;
$procedure$;

-- GetAllForStorageDomain: the active volume of every disk on a storage domain;
-- v_include_temporary => FALSE leaves out temporary (To_Be_Deleted) disks.
CREATE OR REPLACE FUNCTION GetAllForStorageDomain(
    v_storage_domain_id UUID,
    v_include_temporary BOOLEAN DEFAULT TRUE
)
RETURNS SETOF IMAGES_STORAGE_DOMAIN_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.images_storage_domain_view
    WHERE active
        AND storage_id = v_storage_domain_id
        AND (v_include_temporary IS NOT FALSE OR NOT images_storage_domain_view.is_temporary);
END;
$procedure$;

-- GetDiskImageByDiskAndImageIds: a volume of a disk (the active one when no image id is given).
CREATE OR REPLACE FUNCTION GetDiskImageByDiskAndImageIds(
    v_disk_id UUID,
    v_image_id UUID,
    v_user_id UUID,
    v_is_filtered BOOLEAN
)
RETURNS SETOF IMAGES_STORAGE_DOMAIN_VIEW
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.images_storage_domain_view
    WHERE image_group_id = v_disk_id
        AND ((v_image_id IS NULL AND active) OR image_guid = v_image_id)
        AND v_is_filtered IS NOT TRUE;
END;
$procedure$;
