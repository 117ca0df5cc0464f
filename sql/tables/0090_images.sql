-- images: one row per volume; the volumes of an image group form a chain through parentid.
CREATE TABLE images (
    image_guid UUID NOT NULL,
    creation_date TIMESTAMP WITH TIME ZONE NOT NULL,
    size BIGINT NOT NULL,
    it_guid UUID NOT NULL,
    parentid UUID,
    imagestatus INTEGER DEFAULT 0,
    lastmodified TIMESTAMP WITH TIME ZONE NOT NULL,
    vm_snapshot_id UUID,
    volume_type INTEGER NOT NULL DEFAULT 2,
    volume_format INTEGER NOT NULL DEFAULT 4,
    image_group_id UUID,
    _create_date TIMESTAMP WITH TIME ZONE DEFAULT localtimestamp,
    _update_date TIMESTAMP WITH TIME ZONE,
    active BOOLEAN NOT NULL DEFAULT FALSE,
    volume_classification SMALLINT,
    qcow_compat INTEGER DEFAULT 0,
    sequence_number INTEGER DEFAULT 0,
    CONSTRAINT pk_images PRIMARY KEY (image_guid),
    CONSTRAINT fk_image_templates_images FOREIGN KEY (it_guid) REFERENCES images (image_guid)
);

CREATE INDEX idx_images_images_group_id ON images (image_group_id);
CREATE INDEX idx_images_it_guid ON images (it_guid);
-- Not in oVirt: chain walks and snapshot lookups go by these.
CREATE INDEX idx_images_parentid ON images (parentid);
CREATE INDEX idx_images_vm_snapshot_id ON images (vm_snapshot_id);

-- oVirt's empty image: the it_guid of every volume not based on a template volume.
INSERT INTO images (
    image_guid, creation_date, size, it_guid, parentid, imagestatus, lastmodified,
    volume_type, volume_format, active
)
VALUES (
    '00000000-0000-0000-0000-000000000000', '2008-04-01 00:00:00+00', 0,
    '00000000-0000-0000-0000-000000000000', NULL,
    0, '2008-04-01 00:00:00+00', 2, 4, FALSE
);

COMMENT ON TABLE images IS
'Volumes (oVirt images): each belongs to an image group (a disk) and, but the base, has a parent volume.';
COMMENT ON COLUMN images.image_guid IS 'The volume id (VDSM volUUID).';
COMMENT ON COLUMN images.it_guid IS
'The template volume this volume is based on (00000000-... when none).';
COMMENT ON COLUMN images.parentid IS 'The parent volume in the chain (00000000-... for the base volume).';
COMMENT ON COLUMN images.imagestatus IS 'oVirt ImageStatus: Unassigned=0, OK=1, LOCKED=2, ILLEGAL=4.';
COMMENT ON COLUMN images.vm_snapshot_id IS 'The VM snapshot the volume belongs to.';
COMMENT ON COLUMN images.volume_type IS 'oVirt VolumeType: Unassigned=0, Preallocated=1, Sparse=2.';
COMMENT ON COLUMN images.volume_format IS 'oVirt VolumeFormat: Unassigned=3, COW=4, RAW=5.';
COMMENT ON COLUMN images.image_group_id IS 'The disk (VDSM imgUUID, base_disks.disk_id).';
COMMENT ON COLUMN images.active IS 'True on the leaf volume the VM writes to.';
COMMENT ON COLUMN images.volume_classification IS
'oVirt VolumeClassification: Volume=0, Snapshot=1, Invalid=2.';
