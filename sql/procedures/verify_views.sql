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
