-- image_move_links (Move Disk Two Phase Commit): images_to_be_deleted keyed by image id, for
-- the lookups, and the trigger that keeps it in step. Fresh installs; existing databases run
-- sql/upgrade/0005_image_move_links.sql, which creates the same table and trigger and fills it.
-- The trigger that keeps it in step, and its function, are in
-- sql/procedures/images_to_be_deleted_sp.sql (created there when missing, in the same deploy).

CREATE TABLE IF NOT EXISTS image_move_links (
    image_id UUID NOT NULL,
    src_image_id UUID,
    src_image_group_id UUID,
    src_storage UUID,
    dest_storage UUID,
    leftover_image_ids UUID[],
    CONSTRAINT pk_image_move_links PRIMARY KEY (image_id),
    CONSTRAINT ck_image_move_links_source CHECK (
        (src_image_id IS NULL) = (src_image_group_id IS NULL)
        AND (src_image_id IS NULL) = (src_storage IS NULL)
        AND (src_image_id IS NULL) = (dest_storage IS NULL)
    ),
    CONSTRAINT ck_image_move_links_leftovers CHECK (cardinality(leftover_image_ids) > 0)
);

COMMENT ON TABLE image_move_links IS
'Move Disk Two Phase Commit: images_to_be_deleted keyed by image id, so that a lookup of a '
'volume finds what a move says about it with one index probe: for a temporary volume its '
'source volume, disk and domains; for a source volume the temporary volumes standing for '
'its pending leftovers. Kept in step by the trigger on images_to_be_deleted (never written '
'otherwise); VerifyImageMoveLinks reports a row out of step.';
COMMENT ON COLUMN image_move_links.image_id IS
'images.image_guid of a volume that a move touches: a temporary volume, a source volume, or both.';
COMMENT ON COLUMN image_move_links.src_image_id IS
'For a temporary volume: images_to_be_deleted.src_image_id of its row; NULL otherwise.';
COMMENT ON COLUMN image_move_links.src_image_group_id IS
'For a temporary volume: images_to_be_deleted.src_image_group_id of its row; NULL otherwise.';
COMMENT ON COLUMN image_move_links.src_storage IS
'For a temporary volume: images_to_be_deleted.src_storage of its row; NULL otherwise.';
COMMENT ON COLUMN image_move_links.dest_storage IS
'For a temporary volume: images_to_be_deleted.dest_storage of its row; NULL otherwise.';
COMMENT ON COLUMN image_move_links.leftover_image_ids IS
'For a source volume: the image_id of every images_to_be_deleted row whose src_image_id it '
'is (in no particular order); NULL when none.';
