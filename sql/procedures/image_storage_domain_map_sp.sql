-- image_storage_domain_map: volume placement (oVirt names and parameters).

-- Insertimage_storage_domain_map: places a volume on a storage domain.
CREATE OR REPLACE FUNCTION Insertimage_storage_domain_map(
    v_image_id UUID,
    v_storage_domain_id UUID,
    v_quota_id UUID,
    v_disk_profile_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.image_storage_domain_map (
        image_id,
        storage_domain_id,
        quota_id,
        disk_profile_id
    )
    VALUES (
        v_image_id,
        v_storage_domain_id,
        v_quota_id,
        v_disk_profile_id
    );
END;
$procedure$;

-- Deleteimage_storage_domain_map: removes a volume from one storage domain.
CREATE OR REPLACE FUNCTION Deleteimage_storage_domain_map(
    v_image_id UUID,
    v_storage_domain_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.image_storage_domain_map
    WHERE image_id = v_image_id
        AND storage_domain_id = v_storage_domain_id;
END;
$procedure$;

-- Deleteimage_storage_domain_map_by_image_id: removes a volume from every storage domain.
CREATE OR REPLACE FUNCTION Deleteimage_storage_domain_map_by_image_id(
    v_image_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.image_storage_domain_map
    WHERE image_id = v_image_id;
END;
$procedure$;

-- Getimage_storage_domain_mapByimage_id: the storage domains holding a volume.
CREATE OR REPLACE FUNCTION Getimage_storage_domain_mapByimage_id(
    v_image_id UUID
)
RETURNS SETOF IMAGE_STORAGE_DOMAIN_MAP
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.image_storage_domain_map
    WHERE image_id = v_image_id;
END;
$procedure$;

-- Getimage_storage_domain_mapBystorage_domain_id: the volumes on a storage domain.
CREATE OR REPLACE FUNCTION Getimage_storage_domain_mapBystorage_domain_id(
    v_storage_domain_id UUID
)
RETURNS SETOF IMAGE_STORAGE_DOMAIN_MAP
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.image_storage_domain_map
    WHERE storage_domain_id = v_storage_domain_id;
END;
$procedure$;

-- UpdateQuotaForImageAndSnapshots: charges every volume of a disk on a domain to a quota.
CREATE OR REPLACE FUNCTION UpdateQuotaForImageAndSnapshots(
    v_disk_id UUID,
    v_storage_domain_id UUID,
    v_quota_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.image_storage_domain_map AS isdm
    SET quota_id = v_quota_id
    FROM public.images AS i
    WHERE i.image_group_id = v_disk_id
        AND isdm.image_id = i.image_guid
        AND isdm.storage_domain_id = v_storage_domain_id;
END;
$procedure$;

-- UpdateDiskProfileByImageGroupId: sets the disk profile of every volume of a disk on a domain.
CREATE OR REPLACE FUNCTION UpdateDiskProfileByImageGroupId(
    v_image_group_id UUID,
    v_storage_domain_id UUID,
    v_disk_profile_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.image_storage_domain_map AS isdm
    SET disk_profile_id = v_disk_profile_id
    FROM public.images AS i
    WHERE i.image_group_id = v_image_group_id
        AND isdm.image_id = i.image_guid
        AND isdm.storage_domain_id = v_storage_domain_id;
END;
$procedure$;
