-- disk_image_dynamic: the statistics and actual size of a volume.
CREATE TABLE disk_image_dynamic (
    image_id UUID NOT NULL,
    read_rate BIGINT,
    write_rate BIGINT,
    actual_size BIGINT NOT NULL,
    read_latency_seconds NUMERIC(18, 9),
    write_latency_seconds NUMERIC(18, 9),
    flush_latency_seconds NUMERIC(18, 9),
    _update_date TIMESTAMP WITH TIME ZONE,
    read_ops BIGINT DEFAULT 0,
    write_ops BIGINT DEFAULT 0,
    CONSTRAINT pk_disk_image_dynamic PRIMARY KEY (image_id)
);

COMMENT ON TABLE disk_image_dynamic IS
'Run-time data of volumes: bytes actually allocated and I/O statistics (no foreign key, as in oVirt).';
COMMENT ON COLUMN disk_image_dynamic.image_id IS 'The volume (images.image_guid).';
COMMENT ON COLUMN disk_image_dynamic.actual_size IS 'Bytes the volume occupies on its storage domain.';
