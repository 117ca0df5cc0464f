-- storage_pool: a data center; its domains are attached through storage_pool_iso_map.
CREATE TABLE storage_pool (
    id UUID NOT NULL,
    name VARCHAR(40) NOT NULL,
    description VARCHAR(4000) NOT NULL,
    storage_pool_type INTEGER,
    storage_pool_format_type VARCHAR(50),
    status INTEGER NOT NULL,
    master_domain_version INTEGER NOT NULL,
    spm_vds_id UUID,
    compatibility_version VARCHAR(40) NOT NULL DEFAULT '2.2',
    _create_date TIMESTAMP WITH TIME ZONE DEFAULT localtimestamp,
    _update_date TIMESTAMP WITH TIME ZONE,
    quota_enforcement_type INTEGER,
    free_text_comment TEXT NOT NULL DEFAULT '',
    is_local BOOLEAN,
    managed BOOLEAN DEFAULT TRUE,
    CONSTRAINT pk_storage_pool PRIMARY KEY (id)
);

COMMENT ON TABLE storage_pool IS
'Data centers (oVirt storage pools): the unit that storage domains, quotas and VMs belong to.';
COMMENT ON COLUMN storage_pool.id IS 'The data center id.';
COMMENT ON COLUMN storage_pool.name IS 'The data center name.';
COMMENT ON COLUMN storage_pool.status IS
'oVirt StoragePoolStatus: Uninitialized=0, Up=1, Maintenance=2, NotOperational=3, NonResponsive=4, '
'Contend=5.';
COMMENT ON COLUMN storage_pool.quota_enforcement_type IS
'oVirt QuotaEnforcementTypeEnum: DISABLED=0, SOFT_ENFORCEMENT=1, HARD_ENFORCEMENT=2.';
