-- Storage domains: static and dynamic rows, storage_domains lookups (oVirt storages_sp.sql names).

-- Insertstorage_domain_static: adds a storage domain.
CREATE OR REPLACE FUNCTION Insertstorage_domain_static(
    v_id UUID,
    v_storage VARCHAR(250),
    v_storage_name VARCHAR(250),
    v_storage_description VARCHAR(4000),
    v_storage_comment TEXT,
    v_storage_type INTEGER,
    v_storage_domain_type INTEGER,
    v_storage_domain_format_type VARCHAR(50),
    v_last_time_used_as_master BIGINT,
    v_wipe_after_delete BOOLEAN,
    v_discard_after_delete BOOLEAN,
    v_first_metadata_device VARCHAR(100),
    v_vg_metadata_device VARCHAR(100),
    v_warning_low_space_indicator INTEGER,
    v_critical_space_action_blocker INTEGER,
    v_warning_low_confirmed_space_indicator INTEGER,
    v_backup BOOLEAN,
    v_block_size INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.storage_domain_static (
        id,
        storage,
        storage_name,
        storage_description,
        storage_comment,
        storage_type,
        storage_domain_type,
        storage_domain_format_type,
        last_time_used_as_master,
        wipe_after_delete,
        discard_after_delete,
        first_metadata_device,
        vg_metadata_device,
        warning_low_space_indicator,
        critical_space_action_blocker,
        warning_low_confirmed_space_indicator,
        backup,
        block_size
    )
    VALUES (
        v_id,
        v_storage,
        v_storage_name,
        v_storage_description,
        v_storage_comment,
        v_storage_type,
        v_storage_domain_type,
        v_storage_domain_format_type,
        v_last_time_used_as_master,
        v_wipe_after_delete,
        v_discard_after_delete,
        v_first_metadata_device,
        v_vg_metadata_device,
        v_warning_low_space_indicator,
        v_critical_space_action_blocker,
        v_warning_low_confirmed_space_indicator,
        v_backup,
        v_block_size
    );
END;
$procedure$;

-- Updatestorage_domain_static: rewrites the configuration of a storage domain.
CREATE OR REPLACE FUNCTION Updatestorage_domain_static(
    v_id UUID,
    v_storage VARCHAR(250),
    v_storage_name VARCHAR(250),
    v_storage_description VARCHAR(4000),
    v_storage_comment TEXT,
    v_storage_type INTEGER,
    v_storage_domain_type INTEGER,
    v_storage_domain_format_type INTEGER,
    v_last_time_used_as_master BIGINT,
    v_wipe_after_delete BOOLEAN,
    v_discard_after_delete BOOLEAN,
    v_first_metadata_device VARCHAR(100),
    v_vg_metadata_device VARCHAR(100),
    v_warning_low_space_indicator INTEGER,
    v_critical_space_action_blocker INTEGER,
    v_warning_low_confirmed_space_indicator INTEGER,
    v_backup BOOLEAN,
    v_block_size INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.storage_domain_static
    SET
        storage = v_storage,
        storage_name = v_storage_name,
        storage_description = v_storage_description,
        storage_comment = v_storage_comment,
        storage_type = v_storage_type,
        storage_domain_type = v_storage_domain_type,
        storage_domain_format_type = v_storage_domain_format_type::VARCHAR,
        last_time_used_as_master = v_last_time_used_as_master,
        wipe_after_delete = v_wipe_after_delete,
        discard_after_delete = v_discard_after_delete,
        first_metadata_device = v_first_metadata_device,
        vg_metadata_device = v_vg_metadata_device,
        warning_low_space_indicator = v_warning_low_space_indicator,
        critical_space_action_blocker = v_critical_space_action_blocker,
        warning_low_confirmed_space_indicator = v_warning_low_confirmed_space_indicator,
        backup = v_backup,
        block_size = v_block_size,
        _update_date = LOCALTIMESTAMP
    WHERE id = v_id;
END;
$procedure$;

-- Deletestorage_domain_static: removes a storage domain (and its attachments).
CREATE OR REPLACE FUNCTION Deletestorage_domain_static(
    v_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.storage_domain_static
    WHERE id = v_id;
END;
$procedure$;

-- GetAllFromstorage_domain_static: every storage domain's configuration.
CREATE OR REPLACE FUNCTION GetAllFromstorage_domain_static()
RETURNS SETOF STORAGE_DOMAIN_STATIC
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_domain_static;
END;
$procedure$;

-- Getstorage_domain_staticByid: the configuration of a storage domain.
CREATE OR REPLACE FUNCTION Getstorage_domain_staticByid(
    v_id UUID
)
RETURNS SETOF STORAGE_DOMAIN_STATIC
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_domain_static
    WHERE id = v_id;
END;
$procedure$;

-- Getstorage_domain_staticByName: the configuration of the storage domain with that name.
CREATE OR REPLACE FUNCTION Getstorage_domain_staticByName(
    v_name VARCHAR(250)
)
RETURNS SETOF STORAGE_DOMAIN_STATIC
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_domain_static
    WHERE storage_name = v_name;
END;
$procedure$;

-- Getstorage_domain_staticBystorage_pool_id: the configuration of every domain attached to a data center.
CREATE OR REPLACE FUNCTION Getstorage_domain_staticBystorage_pool_id(
    v_storage_pool_id UUID
)
RETURNS SETOF STORAGE_DOMAIN_STATIC
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT sds.*
    FROM public.storage_domain_static AS sds
    INNER JOIN public.storage_pool_iso_map AS spim ON sds.id = spim.storage_id
    WHERE spim.storage_pool_id = v_storage_pool_id;
END;
$procedure$;

-- Insertstorage_domain_dynamic: adds the space row of a storage domain (GB).
CREATE OR REPLACE FUNCTION Insertstorage_domain_dynamic(
    v_available_disk_size INTEGER,
    v_id UUID,
    v_used_disk_size INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.storage_domain_dynamic (
        available_disk_size,
        id,
        used_disk_size
    )
    VALUES (
        v_available_disk_size,
        v_id,
        v_used_disk_size
    );
END;
$procedure$;

-- Updatestorage_domain_dynamic: records the space a storage domain reports (GB).
CREATE OR REPLACE FUNCTION Updatestorage_domain_dynamic(
    v_available_disk_size INTEGER,
    v_id UUID,
    v_used_disk_size INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.storage_domain_dynamic
    SET
        available_disk_size = v_available_disk_size,
        used_disk_size = v_used_disk_size,
        _update_date = LOCALTIMESTAMP
    WHERE id = v_id;
END;
$procedure$;

-- Deletestorage_domain_dynamic: removes the space row of a storage domain.
CREATE OR REPLACE FUNCTION Deletestorage_domain_dynamic(
    v_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.storage_domain_dynamic
    WHERE id = v_id;
END;
$procedure$;

-- Getstorage_domain_dynamicByid: the space row of a storage domain.
CREATE OR REPLACE FUNCTION Getstorage_domain_dynamicByid(
    v_id UUID
)
RETURNS SETOF STORAGE_DOMAIN_DYNAMIC
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_domain_dynamic
    WHERE id = v_id;
END;
$procedure$;

-- GetAllFromstorage_domain_dynamic: every space row.
CREATE OR REPLACE FUNCTION GetAllFromstorage_domain_dynamic()
RETURNS SETOF STORAGE_DOMAIN_DYNAMIC
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_domain_dynamic;
END;
$procedure$;

-- GetAllFromstorage_domains: every storage domain, one row per data center it is attached to.
CREATE OR REPLACE FUNCTION GetAllFromstorage_domains(
    v_user_id UUID,
    v_is_filtered BOOLEAN
)
RETURNS SETOF STORAGE_DOMAINS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_domains
    WHERE v_is_filtered IS NOT TRUE;
END;
$procedure$;

-- Getstorage_domains_By_id_and_by_storage_pool_id: a storage domain as attached to a data center.
CREATE OR REPLACE FUNCTION Getstorage_domains_By_id_and_by_storage_pool_id(
    v_id UUID,
    v_storage_pool_id UUID
)
RETURNS SETOF STORAGE_DOMAINS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_domains
    WHERE id = v_id
        AND storage_pool_id = v_storage_pool_id;
END;
$procedure$;

-- Getstorage_domains_By_storagePoolId: the storage domains attached to a data center.
CREATE OR REPLACE FUNCTION Getstorage_domains_By_storagePoolId(
    v_storage_pool_id UUID,
    v_user_id UUID,
    v_is_filtered BOOLEAN
)
RETURNS SETOF STORAGE_DOMAINS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_domains
    WHERE storage_pool_id = v_storage_pool_id
        AND v_is_filtered IS NOT TRUE;
END;
$procedure$;

-- Getstorage_domain_by_type_storagePoolId_and_status: a data center's domains of that type
-- and status (NULL status: any).
CREATE OR REPLACE FUNCTION Getstorage_domain_by_type_storagePoolId_and_status(
    v_storage_domain_type INTEGER,
    v_storage_pool_id UUID,
    v_status INTEGER
)
RETURNS SETOF STORAGE_DOMAINS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.storage_domains
    WHERE storage_pool_id = v_storage_pool_id
        AND storage_domain_type = v_storage_domain_type
        AND (v_status IS NULL OR status = v_status);
END;
$procedure$;

-- Getstorage_domains_List_By_ImageId: the storage domains holding a volume.
CREATE OR REPLACE FUNCTION Getstorage_domains_List_By_ImageId(
    v_image_id UUID
)
RETURNS SETOF STORAGE_DOMAINS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT sd.*
    FROM public.storage_domains AS sd
    INNER JOIN public.image_storage_domain_map AS isdm ON sd.id = isdm.storage_domain_id
    WHERE isdm.image_id = v_image_id;
END;
$procedure$;
