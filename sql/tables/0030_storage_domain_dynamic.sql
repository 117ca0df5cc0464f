-- storage_domain_dynamic: the space a storage domain reports.
CREATE TABLE storage_domain_dynamic (
    id UUID NOT NULL,
    available_disk_size INTEGER,
    used_disk_size INTEGER,
    _update_date TIMESTAMP WITH TIME ZONE,
    external_status INTEGER NOT NULL DEFAULT 0,
    confirmed_available_disk_size INTEGER,
    vdo_savings INTEGER,
    CONSTRAINT pk_storage_domain_dynamic PRIMARY KEY (id),
    CONSTRAINT fk_storage_domain_dynamic_storage_domain_static
    FOREIGN KEY (id) REFERENCES storage_domain_static (id)
);

COMMENT ON TABLE storage_domain_dynamic IS
'Space of each storage domain as last reported by the storage, in GB.';
COMMENT ON COLUMN storage_domain_dynamic.id IS 'The storage domain (storage_domain_static.id).';
COMMENT ON COLUMN storage_domain_dynamic.available_disk_size IS 'Free space, GB.';
COMMENT ON COLUMN storage_domain_dynamic.used_disk_size IS 'Used space, GB.';
COMMENT ON COLUMN storage_domain_dynamic.external_status IS
'oVirt ExternalStatus: Ok=0, Info=1, Warning=2, Error=3, Failure=4.';
