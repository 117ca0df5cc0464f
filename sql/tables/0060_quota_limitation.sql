-- quota_limitation: the limits of a quota, globally or per storage domain / cluster.
CREATE TABLE quota_limitation (
    id UUID NOT NULL,
    quota_id UUID NOT NULL,
    storage_id UUID,
    cluster_id UUID,
    virtual_cpu INTEGER,
    mem_size_mb BIGINT,
    storage_size_gb BIGINT,
    CONSTRAINT pk_quota_limitation PRIMARY KEY (id),
    CONSTRAINT quota_limitation_quota_id_fkey
    FOREIGN KEY (quota_id) REFERENCES quota (id) ON DELETE CASCADE,
    CONSTRAINT quota_limitation_storage_id_fkey
    FOREIGN KEY (storage_id) REFERENCES storage_domain_static (id) ON DELETE CASCADE
);

CREATE INDEX idx_quota_limitation_quota_id ON quota_limitation (quota_id);
CREATE INDEX idx_quota_limitation_storage_id ON quota_limitation (storage_id)
WHERE storage_id IS NOT NULL;
CREATE INDEX idx_quota_limitation_cluster_id ON quota_limitation (cluster_id)
WHERE cluster_id IS NOT NULL;

COMMENT ON TABLE quota_limitation IS
'Quota limits: a row without storage_id and cluster_id is global to the quota; one with storage_id limits '
'that domain.';
COMMENT ON COLUMN quota_limitation.id IS 'The limitation id.';
COMMENT ON COLUMN quota_limitation.quota_id IS 'The quota limited.';
COMMENT ON COLUMN quota_limitation.storage_id IS
'The storage domain limited (NULL: global or compute limit).';
COMMENT ON COLUMN quota_limitation.cluster_id IS
'The cluster limited (clusters are outside this schema: no foreign key).';
COMMENT ON COLUMN quota_limitation.storage_size_gb IS 'Storage limit in GB; -1 is unlimited.';
