-- VMs and templates: oVirt's InsertVmStaticRow / InsertVmTemplateRow with only the parameters of the
-- columns kept, in oVirt's order.

-- InsertVmStaticRow: adds a VM.
CREATE OR REPLACE FUNCTION InsertVmStaticRow(
    v_description VARCHAR(4000),
    v_free_text_comment TEXT,
    v_mem_size_mb INTEGER,
    v_os INTEGER,
    v_cluster_id UUID,
    v_vm_guid UUID,
    v_vm_name VARCHAR(255),
    v_vmt_guid UUID,
    v_creation_date TIMESTAMP WITH TIME ZONE,
    v_quota_id UUID,
    v_template_version_number INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.vm_static (
        description,
        free_text_comment,
        mem_size_mb,
        os,
        cluster_id,
        vm_guid,
        vm_name,
        vmt_guid,
        creation_date,
        quota_id,
        template_version_number,
        entity_type
    )
    VALUES (
        v_description,
        v_free_text_comment,
        v_mem_size_mb,
        v_os,
        v_cluster_id,
        v_vm_guid,
        v_vm_name,
        v_vmt_guid,
        v_creation_date,
        v_quota_id,
        v_template_version_number,
        'VM'
    );
END;
$procedure$;

-- InsertVmTemplateRow: adds a template (its vmt_guid is its own id).
CREATE OR REPLACE FUNCTION InsertVmTemplateRow(
    v_creation_date TIMESTAMP WITH TIME ZONE,
    v_description VARCHAR(4000),
    v_free_text_comment TEXT,
    v_mem_size_mb INTEGER,
    v_name VARCHAR(255),
    v_os INTEGER,
    v_vmt_guid UUID,
    v_cluster_id UUID,
    v_status INTEGER,
    v_quota_id UUID,
    v_template_type VARCHAR(40),
    v_template_version_name VARCHAR(40)
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.vm_static (
        creation_date,
        description,
        free_text_comment,
        mem_size_mb,
        vm_name,
        os,
        vm_guid,
        cluster_id,
        template_status,
        quota_id,
        entity_type,
        template_version_name,
        vmt_guid
    )
    VALUES (
        v_creation_date,
        v_description,
        v_free_text_comment,
        v_mem_size_mb,
        v_name,
        v_os,
        v_vmt_guid,
        v_cluster_id,
        v_status,
        v_quota_id,
        v_template_type,
        v_template_version_name,
        v_vmt_guid
    );
END;
$procedure$;

-- DeleteVmStatic: removes a VM (its devices go with it); no permissions are kept here.
CREATE OR REPLACE FUNCTION DeleteVmStatic(
    v_vm_guid UUID,
    v_remove_permissions BOOLEAN
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.vm_static
    WHERE vm_guid = v_vm_guid
        AND entity_type = 'VM';
END;
$procedure$;

-- DeleteVmTemplates: removes a template (its devices go with it).
CREATE OR REPLACE FUNCTION DeleteVmTemplates(
    v_vmt_guid UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.vm_static
    WHERE vm_guid = v_vmt_guid
        AND entity_type <> 'VM';
END;
$procedure$;

-- GetVmStaticRowByVmGuid: the VM or template with that id.
CREATE OR REPLACE FUNCTION GetVmStaticRowByVmGuid(
    v_vm_guid UUID
)
RETURNS SETOF VM_STATIC
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.vm_static
    WHERE vm_guid = v_vm_guid;
END;
$procedure$;

-- GetAllVmStaticRows: every VM.
CREATE OR REPLACE FUNCTION GetAllVmStaticRows()
RETURNS SETOF VM_STATIC
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.vm_static
    WHERE entity_type = 'VM';
END;
$procedure$;
