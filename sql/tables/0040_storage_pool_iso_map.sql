-- storage_pool_iso_map: which storage domains are attached to which data center, and their status there.
CREATE TABLE storage_pool_iso_map (
    storage_id UUID NOT NULL,
    storage_pool_id UUID NOT NULL,
    status INTEGER,
    CONSTRAINT pk_storage_domain_pool_map PRIMARY KEY (storage_id, storage_pool_id),
    CONSTRAINT fk_storage_domain_pool_map_storage_domain_static
    FOREIGN KEY (storage_id) REFERENCES storage_domain_static (id) ON DELETE CASCADE,
    CONSTRAINT fk_storage_domain_pool_map_storage_pool
    FOREIGN KEY (storage_pool_id) REFERENCES storage_pool (id) ON DELETE CASCADE
);

CREATE INDEX idx_storage_pool_iso_map_storage_id ON storage_pool_iso_map (storage_id);
CREATE INDEX idx_storage_pool_iso_map_storage_pool_id ON storage_pool_iso_map (storage_pool_id);

COMMENT ON TABLE storage_pool_iso_map IS
'Attachment of storage domains to data centers, with the domain status in that data center.';
COMMENT ON COLUMN storage_pool_iso_map.storage_id IS 'The storage domain.';
COMMENT ON COLUMN storage_pool_iso_map.storage_pool_id IS 'The data center.';
COMMENT ON COLUMN storage_pool_iso_map.status IS
'oVirt StorageDomainStatus: Unknown=0, Uninitialized=1, Unattached=2, Active=3, Inactive=4, Locked=5, '
'Maintenance=6, PreparingForMaintenance=7, Detaching=8, Activating=9.';
