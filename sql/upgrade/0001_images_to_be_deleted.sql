-- 0001: images_to_be_deleted (Move Disk Two Phase Commit); the same table as
-- sql/tables/0900_images_to_be_deleted.sql. A new, empty table: no existing row is
-- rewritten or scanned. Its foreign keys take SHARE ROW EXCLUSIVE on images and
-- storage_domain_static for the moment of the CREATE only; lock_timeout bounds the wait
-- (deploy is one transaction: SET LOCAL ends with it).
SET LOCAL lock_timeout = '3s';
SET LOCAL statement_timeout = '60s';

-- The lookups by source image, source disk and domain (and the foreign keys' checks when a
-- storage domain is removed) need an index on each of those columns. They are declared in
-- the CREATE TABLE as UNIQUE (<column>, image_id), true since image_id is the key, so that the
-- table is born with its indexes: no CREATE INDEX that would lock a table being written.
CREATE TABLE IF NOT EXISTS images_to_be_deleted (
    image_id UUID NOT NULL,
    src_image_id UUID NOT NULL,
    src_image_group_id UUID NOT NULL,
    src_storage UUID NOT NULL,
    dest_storage UUID NOT NULL,
    _create_date TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_images_to_be_deleted PRIMARY KEY (image_id),
    CONSTRAINT fk_images_to_be_deleted_image FOREIGN KEY (image_id)
    REFERENCES images (image_guid),
    CONSTRAINT fk_images_to_be_deleted_src_storage FOREIGN KEY (src_storage)
    REFERENCES storage_domain_static (id),
    CONSTRAINT fk_images_to_be_deleted_dest_storage FOREIGN KEY (dest_storage)
    REFERENCES storage_domain_static (id),
    CONSTRAINT ck_images_to_be_deleted_src_dest CHECK (src_storage <> dest_storage),
    CONSTRAINT ck_images_to_be_deleted_not_own_source CHECK (image_id <> src_image_id),
    CONSTRAINT ux_images_to_be_deleted_src_image_id UNIQUE (src_image_id, image_id),
    CONSTRAINT ux_images_to_be_deleted_src_image_group_id UNIQUE (src_image_group_id, image_id),
    CONSTRAINT ux_images_to_be_deleted_src_storage UNIQUE (src_storage, image_id),
    CONSTRAINT ux_images_to_be_deleted_dest_storage UNIQUE (dest_storage, image_id)
);

COMMENT ON TABLE images_to_be_deleted IS
'Move Disk Two Phase Commit: one row per volume of a temporary (To_Be_Deleted) disk, '
'linking it to the source volume it stands for and to the domains of the move. '
'While the row exists, the source volume on src_storage is not confirmed deleted.';
COMMENT ON COLUMN images_to_be_deleted.image_id IS
'The temporary image: images.image_guid of a volume of the To_Be_Deleted disk.';
COMMENT ON COLUMN images_to_be_deleted.src_image_id IS
'The source image (volume) that was moved; its copy on src_storage is what must be deleted.';
COMMENT ON COLUMN images_to_be_deleted.src_image_group_id IS
'The image group (disk) of the source image, which the storage agent deletes on src_storage.';
COMMENT ON COLUMN images_to_be_deleted.src_storage IS
'The storage domain the source image was moved from (where the leftover lives).';
COMMENT ON COLUMN images_to_be_deleted.dest_storage IS
'The storage domain the source image was moved to.';
COMMENT ON COLUMN images_to_be_deleted._create_date IS
'When the temporary image was created (phase 1 of the move).';

-- Back to the session's timeouts for the rest of the deploy.
RESET statement_timeout;
RESET lock_timeout;
