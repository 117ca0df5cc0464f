-- storage_domain_static: the configuration of a storage domain.
CREATE TABLE storage_domain_static (
    id UUID NOT NULL,
    storage VARCHAR(250) NOT NULL,
    storage_name VARCHAR(250) NOT NULL,
    storage_domain_type INTEGER NOT NULL,
    storage_type INTEGER NOT NULL,
    storage_domain_format_type VARCHAR(50) NOT NULL DEFAULT '0',
    _create_date TIMESTAMP WITH TIME ZONE DEFAULT localtimestamp,
    _update_date TIMESTAMP WITH TIME ZONE,
    recoverable BOOLEAN NOT NULL DEFAULT TRUE,
    last_time_used_as_master BIGINT,
    storage_description VARCHAR(4000) NOT NULL DEFAULT '',
    storage_comment TEXT NOT NULL DEFAULT '',
    wipe_after_delete BOOLEAN NOT NULL DEFAULT FALSE,
    warning_low_space_indicator INTEGER,
    critical_space_action_blocker INTEGER,
    first_metadata_device VARCHAR(100) DEFAULT NULL,
    vg_metadata_device VARCHAR(100) DEFAULT NULL,
    discard_after_delete BOOLEAN NOT NULL DEFAULT FALSE,
    backup BOOLEAN NOT NULL DEFAULT FALSE,
    warning_low_confirmed_space_indicator INTEGER,
    block_size INTEGER DEFAULT 512,
    CONSTRAINT pk_storage PRIMARY KEY (id)
);

COMMENT ON TABLE storage_domain_static IS
'Storage domains: where volumes live (an NFS export, a block volume group, ...).';
COMMENT ON COLUMN storage_domain_static.id IS 'The storage domain id (VDSM sdUUID).';
COMMENT ON COLUMN storage_domain_static.storage IS
'The storage connection or volume group the domain is made of.';
COMMENT ON COLUMN storage_domain_static.storage_name IS 'The domain name shown to users.';
COMMENT ON COLUMN storage_domain_static.storage_domain_type IS
'oVirt StorageDomainType: Master=0, Data=1, ISO=2, ImportExport=3, Image=4, Volume=5, Unknown=6, '
'ManagedBlockStorage=7, Unmanaged=8.';
COMMENT ON COLUMN storage_domain_static.storage_type IS
'oVirt StorageType: UNKNOWN=0, NFS=1, FCP=2, ISCSI=3, LOCALFS=4, POSIXFS=6, GLUSTERFS=7, GLANCE=8, '
'CINDER=9, MANAGED_BLOCK_STORAGE=10.';
COMMENT ON COLUMN storage_domain_static.wipe_after_delete IS
'Default wipe-after-delete of new disks on this domain.';
