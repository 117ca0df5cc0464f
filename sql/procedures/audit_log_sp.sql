-- Events (oVirt audit_log_sp.sql names and parameters).

-- InsertAuditLog: records an event and answers its id; an alert already pending for that host
-- and type is not repeated.
CREATE OR REPLACE FUNCTION InsertAuditLog(
    INOUT v_audit_log_id BIGINT,
    v_log_time TIMESTAMP WITH TIME ZONE,
    v_log_type INTEGER,
    v_log_type_name VARCHAR(100),
    v_severity INTEGER,
    v_message TEXT,
    v_user_id UUID,
    v_user_name VARCHAR(255),
    v_vds_id UUID,
    v_vds_name VARCHAR(255),
    v_vm_id UUID,
    v_vm_name VARCHAR(255),
    v_vm_template_id UUID,
    v_vm_template_name VARCHAR(255),
    v_storage_pool_id UUID,
    v_storage_pool_name VARCHAR(40),
    v_storage_domain_id UUID,
    v_storage_domain_name VARCHAR(250),
    v_cluster_id UUID,
    v_cluster_name VARCHAR(255),
    v_quota_id UUID,
    v_quota_name VARCHAR(60),
    v_correlation_id VARCHAR(50),
    v_job_id UUID,
    v_gluster_volume_id UUID,
    v_gluster_volume_name VARCHAR(1000),
    v_call_stack TEXT,
    v_repeatable BOOLEAN,
    v_brick_id UUID,
    v_brick_path TEXT,
    v_origin VARCHAR(255),
    v_custom_id VARCHAR(255),
    v_custom_event_id INTEGER,
    v_event_flood_in_sec INTEGER,
    v_custom_data TEXT
)
RETURNS BIGINT
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    -- Alerts (severity >= 10) are kept once per host and type unless repeatable.
    IF v_severity >= 10 AND v_repeatable IS NOT TRUE THEN
        SELECT audit_log_id INTO v_audit_log_id
        FROM public.audit_log
        WHERE vds_name = v_vds_name
            AND log_type = v_log_type
            AND NOT deleted
        ORDER BY audit_log_id
        LIMIT 1;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    INSERT INTO public.audit_log (
        log_time,
        log_type,
        log_type_name,
        severity,
        message,
        user_id,
        user_name,
        vds_id,
        vds_name,
        vm_id,
        vm_name,
        vm_template_id,
        vm_template_name,
        storage_pool_id,
        storage_pool_name,
        storage_domain_id,
        storage_domain_name,
        cluster_id,
        cluster_name,
        quota_id,
        quota_name,
        correlation_id,
        job_id,
        gluster_volume_id,
        gluster_volume_name,
        call_stack,
        brick_id,
        brick_path,
        origin,
        custom_id,
        custom_event_id,
        event_flood_in_sec,
        custom_data
    )
    VALUES (
        v_log_time,
        v_log_type,
        v_log_type_name,
        v_severity,
        v_message,
        v_user_id,
        v_user_name,
        v_vds_id,
        v_vds_name,
        v_vm_id,
        v_vm_name,
        v_vm_template_id,
        v_vm_template_name,
        v_storage_pool_id,
        v_storage_pool_name,
        v_storage_domain_id,
        v_storage_domain_name,
        v_cluster_id,
        v_cluster_name,
        v_quota_id,
        v_quota_name,
        v_correlation_id,
        v_job_id,
        v_gluster_volume_id,
        v_gluster_volume_name,
        v_call_stack,
        v_brick_id,
        v_brick_path,
        v_origin,
        v_custom_id,
        v_custom_event_id,
        v_event_flood_in_sec,
        v_custom_data
    )
    RETURNING audit_log_id INTO v_audit_log_id;
END;
$procedure$;

-- GetAuditLogByAuditLogId: the event with that id.
CREATE OR REPLACE FUNCTION GetAuditLogByAuditLogId(
    v_audit_log_id BIGINT
)
RETURNS SETOF AUDIT_LOG
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.audit_log
    WHERE audit_log_id = v_audit_log_id;
END;
$procedure$;

-- GetAuditLogLaterThenDate: the events after a time, newest first.
CREATE OR REPLACE FUNCTION GetAuditLogLaterThenDate(
    v_date TIMESTAMP WITH TIME ZONE
)
RETURNS SETOF AUDIT_LOG
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.audit_log
    WHERE NOT deleted
        AND log_time >= v_date
    ORDER BY audit_log_id DESC;
END;
$procedure$;

-- DeleteAuditLog: hides an event (marks it deleted).
CREATE OR REPLACE FUNCTION DeleteAuditLog(
    v_audit_log_id BIGINT
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.audit_log
    SET deleted = TRUE
    WHERE audit_log_id = v_audit_log_id;
END;
$procedure$;
