-- image_storage_domain_map: on which storage domains each volume is.
CREATE TABLE image_storage_domain_map (
    image_id UUID NOT NULL,
    storage_domain_id UUID NOT NULL,
    quota_id UUID,
    disk_profile_id UUID,
    CONSTRAINT pk_image_storage_domain_map PRIMARY KEY (image_id, storage_domain_id),
    CONSTRAINT fk_image_storage_domain_map_images
    FOREIGN KEY (image_id) REFERENCES images (image_guid) ON DELETE CASCADE,
    CONSTRAINT fk_image_storage_domain_map_storage_domain_static
    FOREIGN KEY (storage_domain_id) REFERENCES storage_domain_static (id) ON DELETE CASCADE,
    CONSTRAINT fk_image_storage_domain_map_quota
    FOREIGN KEY (quota_id) REFERENCES quota (id) ON DELETE SET NULL
);

CREATE INDEX idx_image_storage_domain_map_image_id ON image_storage_domain_map (image_id);
CREATE INDEX idx_image_storage_domain_map_storage_domain_id ON image_storage_domain_map (storage_domain_id);
CREATE INDEX idx_image_storage_domain_map_quota_id ON image_storage_domain_map (quota_id);
CREATE INDEX idx_image_storage_domain_map_profile_id ON image_storage_domain_map (disk_profile_id);

COMMENT ON TABLE image_storage_domain_map IS
'Volume placement: one row per volume and storage domain holding it (template volumes may be on several).';
COMMENT ON COLUMN image_storage_domain_map.image_id IS 'The volume (images.image_guid).';
COMMENT ON COLUMN image_storage_domain_map.storage_domain_id IS 'The storage domain holding it.';
COMMENT ON COLUMN image_storage_domain_map.quota_id IS 'The quota the volume is charged to on that domain.';
COMMENT ON COLUMN image_storage_domain_map.disk_profile_id IS
'The disk profile (disk profiles are outside this schema: no foreign key).';
