-- quota: a named quota of a data center.
CREATE TABLE quota (
    id UUID NOT NULL,
    storage_pool_id UUID NOT NULL,
    quota_name VARCHAR(65) NOT NULL,
    description VARCHAR(250) NOT NULL DEFAULT '',
    _create_date TIMESTAMP WITH TIME ZONE DEFAULT localtimestamp,
    _update_date TIMESTAMP WITH TIME ZONE,
    threshold_cluster_percentage INTEGER DEFAULT 80,
    threshold_storage_percentage INTEGER DEFAULT 80,
    grace_cluster_percentage INTEGER DEFAULT 20,
    grace_storage_percentage INTEGER DEFAULT 20,
    is_default BOOLEAN DEFAULT FALSE,
    CONSTRAINT pk_quota PRIMARY KEY (id),
    CONSTRAINT quota_storage_pool_id_fkey
    FOREIGN KEY (storage_pool_id) REFERENCES storage_pool (id) ON DELETE CASCADE,
    CONSTRAINT quota_quota_name_unique UNIQUE (storage_pool_id, quota_name)
);

CREATE UNIQUE INDEX idx_quota_storage_pool_id_default ON quota (storage_pool_id)
WHERE is_default = TRUE;

COMMENT ON TABLE quota IS 'Quotas: named limits on the storage and compute a data center''s users consume.';
COMMENT ON COLUMN quota.id IS 'The quota id.';
COMMENT ON COLUMN quota.storage_pool_id IS 'The data center the quota belongs to.';
COMMENT ON COLUMN quota.quota_name IS 'The quota name, unique in its data center.';
COMMENT ON COLUMN quota.is_default IS 'The data center''s default quota (at most one per data center).';
