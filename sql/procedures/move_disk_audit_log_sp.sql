-- Events of disk moves in audit_log (written through InsertAuditLog), with the names of the disk,
-- its VM, the domains and the data center looked up from their ids in the same call, so that the
-- engine records an outcome in one round trip. The event types (oVirt's AuditLogType codes and
-- severities, and movedisk's own from 20001) and their message templates live in
-- harness/audit.py; a template's {disk_alias}, {disk_id}, {source_domain_name},
-- {storage_domain_name}, {command_id} and {reason} are filled here ('?' when unknown).

-- InsertMoveDiskAuditLog: records one event of a disk move and answers its audit_log_id;
-- v_storage_domain_id is the domain the event is about (the destination of a move, the source
-- for a source leftover), v_source_domain_id the other end; a name given wins over the lookup.
CREATE OR REPLACE FUNCTION InsertMoveDiskAuditLog(
    v_log_type INTEGER,
    v_log_type_name VARCHAR(100),
    v_severity INTEGER,
    v_message_template TEXT,
    v_disk_id UUID,
    v_source_domain_id UUID,
    v_storage_domain_id UUID,
    v_command_id UUID,
    v_reason TEXT DEFAULT '',
    v_details JSONB DEFAULT '{}',
    v_storage_pool_id UUID DEFAULT NULL,
    v_disk_alias TEXT DEFAULT NULL,
    v_source_domain_name TEXT DEFAULT NULL,
    v_storage_domain_name TEXT DEFAULT NULL,
    v_storage_pool_name TEXT DEFAULT NULL,
    v_user_name TEXT DEFAULT '',
    v_log_time TIMESTAMP WITH TIME ZONE DEFAULT now(),
    v_vm_id UUID DEFAULT NULL,
    v_vm_name TEXT DEFAULT NULL
)
RETURNS BIGINT
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_alias TEXT := v_disk_alias;
    v_src_name TEXT := v_source_domain_name;
    v_sd_name TEXT := v_storage_domain_name;
    v_pool_id UUID := v_storage_pool_id;
    v_pool_name TEXT := v_storage_pool_name;
    v_vm UUID := v_vm_id;
    v_vm_label TEXT := v_vm_name;
    v_message TEXT;
    v_custom JSONB;
    v_id BIGINT;
BEGIN
    IF v_alias IS NULL THEN
        SELECT b.disk_alias INTO v_alias FROM public.base_disks AS b WHERE b.disk_id = v_disk_id;
    END IF;
    IF v_src_name IS NULL THEN
        SELECT s.storage_name INTO v_src_name
        FROM public.storage_domain_static AS s WHERE s.id = v_source_domain_id;
    END IF;
    IF v_sd_name IS NULL THEN
        SELECT s.storage_name INTO v_sd_name
        FROM public.storage_domain_static AS s WHERE s.id = v_storage_domain_id;
    END IF;
    IF v_pool_id IS NULL THEN
        SELECT p.storage_pool_id INTO v_pool_id
        FROM public.storage_pool_iso_map AS p
        WHERE p.storage_id = coalesce(v_storage_domain_id, v_source_domain_id)
        ORDER BY p.storage_pool_id
        LIMIT 1;
    END IF;
    IF v_pool_name IS NULL THEN
        SELECT sp.name INTO v_pool_name FROM public.storage_pool AS sp WHERE sp.id = v_pool_id;
    END IF;
    IF v_vm IS NULL THEN
        SELECT v.vm_guid, v.vm_name INTO v_vm, v_vm_label
        FROM public.vm_device AS d
        INNER JOIN public.vm_static AS v ON d.vm_id = v.vm_guid
        WHERE d.device_id = v_disk_id AND d.device = 'disk'
        ORDER BY v.vm_name, v.vm_guid
        LIMIT 1;
    END IF;

    v_message := v_message_template;
    v_message := replace(v_message, '{disk_alias}',
                         coalesce(nullif(v_alias, ''), v_disk_id::TEXT, '?'));
    v_message := replace(v_message, '{disk_id}', coalesce(v_disk_id::TEXT, '?'));
    v_message := replace(v_message, '{source_domain_name}',
                         coalesce(nullif(v_src_name, ''), v_source_domain_id::TEXT, '?'));
    v_message := replace(v_message, '{storage_domain_name}',
                         coalesce(nullif(v_sd_name, ''), v_storage_domain_id::TEXT, '?'));
    v_message := replace(v_message, '{command_id}', coalesce(v_command_id::TEXT, '?'));
    v_message := replace(v_message, '{reason}', coalesce(nullif(v_reason, ''), '?'));

    v_custom := pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
        'disk_id', v_disk_id::TEXT,
        'disk_alias', nullif(v_alias, ''),
        'command_id', v_command_id::TEXT,
        'source_domain_id', v_source_domain_id::TEXT,
        'source_domain_name', nullif(v_src_name, ''),
        'reason', nullif(v_reason, '')
    )) || coalesce(v_details, '{}'::JSONB);

    SELECT public.InsertAuditLog(
        v_audit_log_id => NULL,
        v_log_time => coalesce(v_log_time, now()),
        v_log_type => v_log_type,
        v_log_type_name => v_log_type_name,
        v_severity => v_severity,
        v_message => v_message,
        v_user_id => NULL,
        v_user_name => coalesce(v_user_name, ''),
        v_vds_id => NULL,
        v_vds_name => '',
        v_vm_id => v_vm,
        v_vm_name => coalesce(v_vm_label, ''),
        v_vm_template_id => NULL,
        v_vm_template_name => '',
        v_storage_pool_id => v_pool_id,
        v_storage_pool_name => left(coalesce(v_pool_name, ''), 40),
        v_storage_domain_id => v_storage_domain_id,
        v_storage_domain_name => left(coalesce(v_sd_name, ''), 250),
        v_cluster_id => NULL,
        v_cluster_name => '',
        v_quota_id => NULL,
        v_quota_name => '',
        v_correlation_id => left(v_command_id::TEXT, 50),
        v_job_id => NULL,
        v_gluster_volume_id => NULL,
        v_gluster_volume_name => '',
        v_call_stack => '',
        v_repeatable => FALSE,
        v_brick_id => NULL,
        v_brick_path => '',
        v_origin => 'oVirt',
        v_custom_id => NULL,
        v_custom_event_id => -1,
        v_event_flood_in_sec => 30,
        v_custom_data => v_custom::TEXT
    ) INTO v_id;
    RETURN v_id;
END;
$procedure$;
