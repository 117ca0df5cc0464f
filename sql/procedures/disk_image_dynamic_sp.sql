-- disk_image_dynamic: volume sizes and statistics (oVirt names and parameters).

-- Insertdisk_image_dynamic: adds the run-time row of a volume.
CREATE OR REPLACE FUNCTION Insertdisk_image_dynamic(
    v_image_id UUID,
    v_read_rate BIGINT,
    v_read_ops BIGINT,
    v_write_rate BIGINT,
    v_write_ops BIGINT,
    v_actual_size BIGINT,
    v_read_latency_seconds NUMERIC(18, 9),
    v_write_latency_seconds NUMERIC(18, 9),
    v_flush_latency_seconds NUMERIC(18, 9)
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.disk_image_dynamic (
        image_id,
        read_rate,
        read_ops,
        write_rate,
        write_ops,
        actual_size,
        read_latency_seconds,
        write_latency_seconds,
        flush_latency_seconds
    )
    VALUES (
        v_image_id,
        v_read_rate,
        v_read_ops,
        v_write_rate,
        v_write_ops,
        v_actual_size,
        v_read_latency_seconds,
        v_write_latency_seconds,
        v_flush_latency_seconds
    );
END;
$procedure$;

-- Updatedisk_image_dynamic: rewrites the run-time row of a volume.
CREATE OR REPLACE FUNCTION Updatedisk_image_dynamic(
    v_image_id UUID,
    v_read_rate BIGINT,
    v_read_ops BIGINT,
    v_write_rate BIGINT,
    v_write_ops BIGINT,
    v_actual_size BIGINT,
    v_read_latency_seconds NUMERIC(18, 9),
    v_write_latency_seconds NUMERIC(18, 9),
    v_flush_latency_seconds NUMERIC(18, 9)
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.disk_image_dynamic
    SET
        read_rate = v_read_rate,
        read_ops = v_read_ops,
        write_rate = v_write_rate,
        write_ops = v_write_ops,
        actual_size = v_actual_size,
        read_latency_seconds = v_read_latency_seconds,
        write_latency_seconds = v_write_latency_seconds,
        flush_latency_seconds = v_flush_latency_seconds,
        _update_date = LOCALTIMESTAMP
    WHERE image_id = v_image_id;
END;
$procedure$;

-- Deletedisk_image_dynamic: removes the run-time row of a volume.
CREATE OR REPLACE FUNCTION Deletedisk_image_dynamic(
    v_image_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.disk_image_dynamic
    WHERE image_id = v_image_id;
END;
$procedure$;

-- Getdisk_image_dynamicByimage_id: the run-time row of a volume.
CREATE OR REPLACE FUNCTION Getdisk_image_dynamicByimage_id(
    v_image_id UUID
)
RETURNS SETOF DISK_IMAGE_DYNAMIC
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.disk_image_dynamic
    WHERE image_id = v_image_id;
END;
$procedure$;

-- GetAllFromdisk_image_dynamic: every run-time row.
CREATE OR REPLACE FUNCTION GetAllFromdisk_image_dynamic()
RETURNS SETOF DISK_IMAGE_DYNAMIC
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.disk_image_dynamic;
END;
$procedure$;
