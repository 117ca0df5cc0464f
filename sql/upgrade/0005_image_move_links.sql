-- 0005: image_move_links (Move Disk Two Phase Commit); the same table and trigger as
-- sql/tables/0930_image_move_links.sql, filled from images_to_be_deleted (one row per image
-- that a move touches: ~2 per images_to_be_deleted row, a few thousand at most). No existing row
-- is rewritten. images_to_be_deleted is locked against writes (SHARE ROW EXCLUSIVE) until the
-- deploy commits, so no row of it changes between the fill and the creation of the trigger
-- (sql/procedures/images_to_be_deleted_sp.sql, same deploy). Deploy runs every script under its
-- own lock_timeout (movedisk deploy --lock-timeout).
-- squawk-ignore-file require-lock-timeout
SET LOCAL statement_timeout = '60s';

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

-- No row of images_to_be_deleted changes from here until the deploy commits: its trigger
-- (images_to_be_deleted_sp.sql, later in this deploy) then keeps the links in step. SHARE ROW
-- EXCLUSIVE is what that CREATE TRIGGER takes anyway; readers are not blocked.
LOCK TABLE images_to_be_deleted IN SHARE ROW EXCLUSIVE MODE;

-- The rows images_to_be_deleted implies (the same query as VerifyImageMoveLinks' expectation).
INSERT INTO image_move_links (
    image_id, src_image_id, src_image_group_id, src_storage, dest_storage, leftover_image_ids
)
WITH l AS (
    SELECT
        s.src_image_id,
        array_agg(s.image_id ORDER BY s.image_id) AS leftover_image_ids
    FROM images_to_be_deleted AS s
    GROUP BY s.src_image_id
)

SELECT
    coalesce(t.image_id, l.src_image_id) AS image_id,
    t.src_image_id,
    t.src_image_group_id,
    t.src_storage,
    t.dest_storage,
    l.leftover_image_ids
FROM images_to_be_deleted AS t
FULL JOIN l ON t.image_id = l.src_image_id
-- Re-run safely (a database where the table and its trigger already exist): the same rows.
ON CONFLICT (image_id) DO UPDATE
    SET
        src_image_id = excluded.src_image_id,
        src_image_group_id = excluded.src_image_group_id,
        src_storage = excluded.src_storage,
        dest_storage = excluded.dest_storage,
        leftover_image_ids = excluded.leftover_image_ids;

-- Back to the session's timeout for the rest of the deploy.
RESET statement_timeout;
