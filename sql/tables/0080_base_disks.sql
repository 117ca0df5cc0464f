-- base_disks: one row per disk (an image group), whatever its volumes.
CREATE TABLE base_disks (
    disk_id UUID NOT NULL,
    wipe_after_delete BOOLEAN NOT NULL DEFAULT FALSE,
    propagate_errors VARCHAR(32) NOT NULL DEFAULT 'Off',
    disk_alias VARCHAR(255),
    disk_description VARCHAR(500) NOT NULL DEFAULT '',
    shareable BOOLEAN DEFAULT FALSE,
    sgio SMALLINT,
    disk_storage_type SMALLINT,
    cinder_volume_type VARCHAR(255),
    disk_content_type SMALLINT NOT NULL DEFAULT 0,
    backup VARCHAR(32) DEFAULT 'None',
    backup_mode VARCHAR(32) DEFAULT NULL,
    CONSTRAINT pk_disks PRIMARY KEY (disk_id)
);

CREATE INDEX idx_base_disks_disk_alias ON base_disks (disk_alias);
CREATE INDEX idx_disk_content_type ON base_disks (disk_content_type);

COMMENT ON TABLE base_disks IS
'Disks: the properties shared by every volume of an image group (disk_id = images.image_group_id).';
COMMENT ON COLUMN base_disks.disk_id IS 'The disk id, equal to the image group id of its volumes.';
COMMENT ON COLUMN base_disks.wipe_after_delete IS
'Zero the disk''s blocks when it is deleted (VDSM postZero).';
COMMENT ON COLUMN base_disks.disk_alias IS 'The disk name shown to users.';
COMMENT ON COLUMN base_disks.disk_storage_type IS
'oVirt DiskStorageType: IMAGE=0, LUN=1, CINDER=2, MANAGED_BLOCK_STORAGE=3.';
COMMENT ON COLUMN base_disks.disk_content_type IS
'oVirt DiskContentType: DATA=0, OVF_STORE=1, MEMORY_DUMP_VOLUME=2, MEMORY_METADATA_VOLUME=3, ISO=4, ...';
