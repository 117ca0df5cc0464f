-- Data centers and domain attachments (oVirt storages_sp.sql names and parameters).

-- Insertstorage_pool: adds a data center.
CREATE OR REPLACE FUNCTION Insertstorage_pool(
    v_description VARCHAR(4000),
    v_free_text_comment TEXT,
    v_id UUID,
    v_name VARCHAR(40),
    v_status INTEGER,
    v_is_local BOOLEAN,
    v_master_domain_version INTEGER,
    v_spm_vds_id UUID,
    v_compatibility_version VARCHAR(40),
    v_quota_enforcement_type INTEGER,
    v_managed BOOLEAN
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.storage_pool (
        description,
        free_text_comment,
        id,
        name,
        status,
        is_local,
        master_domain_version,
        spm_vds_id,
        compatibility_version,
        quota_enforcement_type,
        managed
    )
    VALUES (
        v_description,
        v_free_text_comment,
        v_id,
        v_name,
        v_status,
        v_is_local,
        v_master_domain_version,
        v_spm_vds_id,
        v_compatibility_version,
        v_quota_enforcement_type,
        v_managed
    );
END;
$procedure$;

-- Updatestorage_pool_status: sets the status of a data center.
CREATE OR REPLACE FUNCTION Updatestorage_pool_status(
    v_id UUID,
    v_status INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.storage_pool
    SET
        status = v_status,
        _update_date = LOCALTIMESTAMP
    WHERE id = v_id;
END;
$procedure$;

-- Deletestorage_pool: removes a data center (its attachments and quotas go with it).
CREATE OR REPLACE FUNCTION Deletestorage_pool(
    v_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.storage_pool
    WHERE id = v_id;
END;
$procedure$;

-- GetAllFromstorage_pool: every data center.
CREATE OR REPLACE FUNCTION GetAllFromstorage_pool(
    v_user_id UUID,
    v_is_filtered BOOLEAN
)
RETURNS SETOF STORAGE_POOL
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_pool
    WHERE v_is_filtered IS NOT TRUE;
END;
$procedure$;

-- Getstorage_poolByid: the data center with that id.
CREATE OR REPLACE FUNCTION Getstorage_poolByid(
    v_id UUID,
    v_user_id UUID,
    v_is_filtered BOOLEAN
)
RETURNS SETOF STORAGE_POOL
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_pool
    WHERE id = v_id
        AND v_is_filtered IS NOT TRUE;
END;
$procedure$;

-- Getstorage_poolsByStorageDomainId: the data centers a storage domain is attached to.
CREATE OR REPLACE FUNCTION Getstorage_poolsByStorageDomainId(
    v_storage_domain_id UUID
)
RETURNS SETOF STORAGE_POOL
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT sp.*
    FROM public.storage_pool AS sp
    INNER JOIN public.storage_pool_iso_map AS spim ON sp.id = spim.storage_pool_id
    WHERE spim.storage_id = v_storage_domain_id;
END;
$procedure$;

-- Insertstorage_pool_iso_map: attaches a storage domain to a data center with a status.
CREATE OR REPLACE FUNCTION Insertstorage_pool_iso_map(
    v_storage_id UUID,
    v_storage_pool_id UUID,
    v_status INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.storage_pool_iso_map (
        storage_id,
        storage_pool_id,
        status
    )
    VALUES (
        v_storage_id,
        v_storage_pool_id,
        v_status
    );
END;
$procedure$;

-- Updatestorage_pool_iso_map_status: sets the status (Active=3, Maintenance=6, ...) of an attachment.
CREATE OR REPLACE FUNCTION Updatestorage_pool_iso_map_status(
    v_storage_id UUID,
    v_storage_pool_id UUID,
    v_status INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.storage_pool_iso_map
    SET
        status = v_status
    WHERE storage_id = v_storage_id
        AND storage_pool_id = v_storage_pool_id;
END;
$procedure$;

-- Deletestorage_pool_iso_map: detaches a storage domain from a data center.
CREATE OR REPLACE FUNCTION Deletestorage_pool_iso_map(
    v_storage_id UUID,
    v_storage_pool_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.storage_pool_iso_map
    WHERE storage_id = v_storage_id
        AND storage_pool_id = v_storage_pool_id;
END;
$procedure$;

-- Getstorage_pool_iso_mapBystorage_idAndBystorage_pool_id: one attachment.
CREATE OR REPLACE FUNCTION Getstorage_pool_iso_mapBystorage_idAndBystorage_pool_id(
    v_storage_id UUID,
    v_storage_pool_id UUID
)
RETURNS SETOF STORAGE_POOL_ISO_MAP
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_pool_iso_map
    WHERE storage_id = v_storage_id
        AND storage_pool_id = v_storage_pool_id;
END;
$procedure$;

-- Getstorage_pool_iso_mapsBystorage_id: the attachments of a storage domain.
CREATE OR REPLACE FUNCTION Getstorage_pool_iso_mapsBystorage_id(
    v_storage_id UUID
)
RETURNS SETOF STORAGE_POOL_ISO_MAP
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_pool_iso_map
    WHERE storage_id = v_storage_id;
END;
$procedure$;

-- GetAllFromstorage_pool_iso_map: every attachment.
CREATE OR REPLACE FUNCTION GetAllFromstorage_pool_iso_map()
RETURNS SETOF STORAGE_POOL_ISO_MAP
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_pool_iso_map;
END;
$procedure$;
