-- Quotas and their limits (oVirt quota_sp.sql names and parameters).

-- InsertQuota: adds a quota to a data center.
CREATE OR REPLACE FUNCTION InsertQuota(
    v_id UUID,
    v_storage_pool_id UUID,
    v_quota_name VARCHAR(65),
    v_description VARCHAR(250),
    v_threshold_cluster_percentage INTEGER,
    v_threshold_storage_percentage INTEGER,
    v_grace_cluster_percentage INTEGER,
    v_grace_storage_percentage INTEGER,
    v_is_default BOOLEAN
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.quota (
        id,
        storage_pool_id,
        quota_name,
        description,
        threshold_cluster_percentage,
        threshold_storage_percentage,
        grace_cluster_percentage,
        grace_storage_percentage,
        is_default
    )
    VALUES (
        v_id,
        v_storage_pool_id,
        v_quota_name,
        v_description,
        v_threshold_cluster_percentage,
        v_threshold_storage_percentage,
        v_grace_cluster_percentage,
        v_grace_storage_percentage,
        v_is_default
    );
END;
$procedure$;

-- InsertQuotaLimitation: adds a limit to a quota (global, per domain or per cluster).
CREATE OR REPLACE FUNCTION InsertQuotaLimitation(
    v_id UUID,
    v_quota_id UUID,
    v_storage_id UUID,
    v_cluster_id UUID,
    v_virtual_cpu INTEGER,
    v_mem_size_mb BIGINT,
    v_storage_size_gb BIGINT
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.quota_limitation (
        id,
        quota_id,
        storage_id,
        cluster_id,
        virtual_cpu,
        mem_size_mb,
        storage_size_gb
    )
    VALUES (
        v_id,
        v_quota_id,
        v_storage_id,
        v_cluster_id,
        v_virtual_cpu,
        v_mem_size_mb,
        v_storage_size_gb
    );
END;
$procedure$;

-- DeleteQuotaByQuotaGuid: removes a quota and its limits.
CREATE OR REPLACE FUNCTION DeleteQuotaByQuotaGuid(
    v_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.quota
    WHERE id = v_id;
END;
$procedure$;

-- DeleteQuotaLimitationByQuotaGuid: removes every limit of a quota.
CREATE OR REPLACE FUNCTION DeleteQuotaLimitationByQuotaGuid(
    v_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.quota_limitation
    WHERE quota_id = v_id;
END;
$procedure$;
