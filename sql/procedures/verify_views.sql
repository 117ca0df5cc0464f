-- verify_finding: the shape of one finding of the Verify* functions (the view has no rows;
-- the functions return SETOF it). severity is 'error' or 'warning'; entity_type names what
-- entity_id is (disk, image, images_to_be_deleted, command, quota); related_ids are the
-- other ids involved.
CREATE OR REPLACE VIEW verify_finding AS
SELECT
    NULL::TEXT AS check_name,
    NULL::TEXT AS severity,
    NULL::TEXT AS entity_type,
    NULL::UUID AS entity_id,
    NULL::UUID[] AS related_ids,
    NULL::TEXT AS message
WHERE FALSE;

-- image_move_links_expected_view: image_move_links as images_to_be_deleted says it should be,
-- the rows its trigger (SyncImageMoveLinks) makes: a temporary volume's source columns, a source
-- volume's leftover ids (sorted), one row for a volume that is both. VerifyImageMoveLinks
-- compares the links with it; RebuildImageMoveLinks writes it back.
CREATE OR REPLACE VIEW image_move_links_expected_view AS
WITH leftovers AS (
    SELECT
        s.src_image_id,
        array_agg(s.image_id ORDER BY s.image_id) AS leftover_image_ids
    FROM images_to_be_deleted AS s
    GROUP BY s.src_image_id
)

SELECT
    t.src_image_id,
    t.src_image_group_id,
    t.src_storage,
    t.dest_storage,
    l.leftover_image_ids,
    coalesce(t.image_id, l.src_image_id) AS image_id
FROM images_to_be_deleted AS t
FULL JOIN leftovers AS l ON t.image_id = l.src_image_id;
