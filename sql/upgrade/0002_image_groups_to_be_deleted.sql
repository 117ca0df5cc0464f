-- 0002: image_groups_to_be_deleted (Move Disk Two Phase Commit); the same table as
-- sql/tables/0910_image_groups_to_be_deleted.sql. A new table, filled from the temporary disks
-- that already record a pending deletion: every ILLEGAL temporary disk stands either for a
-- failed move (the disk is still on its source domain: its partial copy on the destination may
-- still be there) or for a source leftover (the disk left the source domain). lock_timeout
-- bounds the wait for the foreign key's lock on storage_domain_static (deploy is one
-- transaction: SET LOCAL ends with it).
SET LOCAL lock_timeout = '3s';
SET LOCAL statement_timeout = '60s';

-- The key (image_group_id, storage_domain_id) answers the lookups by disk; the UNIQUE
-- constraint in the other order answers the lookups by domain and the foreign key's check when
-- a storage domain is removed (the table is born with its indexes).
CREATE TABLE IF NOT EXISTS image_groups_to_be_deleted (
    image_group_id UUID NOT NULL,
    storage_domain_id UUID NOT NULL,
    storage_pool_id UUID,
    reason TEXT NOT NULL,
    temporary_disk_id UUID,
    wipe_after_delete BOOLEAN NOT NULL DEFAULT FALSE,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_attempt TIMESTAMPTZ,
    last_error TEXT,
    _create_date TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_image_groups_to_be_deleted PRIMARY KEY (image_group_id, storage_domain_id),
    CONSTRAINT fk_image_groups_to_be_deleted_storage FOREIGN KEY (storage_domain_id)
    REFERENCES storage_domain_static (id),
    CONSTRAINT ck_image_groups_to_be_deleted_reason
    CHECK (reason IN ('MOVE_FAILED', 'SOURCE_AFTER_MOVE')),
    CONSTRAINT ck_image_groups_to_be_deleted_attempts CHECK (attempts >= 0),
    CONSTRAINT ux_image_groups_to_be_deleted_storage UNIQUE (storage_domain_id, image_group_id)
);

COMMENT ON TABLE image_groups_to_be_deleted IS
'Move Disk Two Phase Commit: one row per image group the storage agent must still delete on a '
'storage domain (Image.delete). The row goes only once the agent confirmed the deletion '
'(ConfirmImageGroupDeleted, or RemoveTemporaryDisk for a source leftover).';
COMMENT ON COLUMN image_groups_to_be_deleted.image_group_id IS
'The image group (disk id) to delete: imgUUID of the agent''s Image.delete.';
COMMENT ON COLUMN image_groups_to_be_deleted.storage_domain_id IS
'The storage domain to delete it on: sdUUID of the agent''s Image.delete.';
COMMENT ON COLUMN image_groups_to_be_deleted.storage_pool_id IS
'The storage pool of that domain when the row was recorded: spUUID of Image.delete.';
COMMENT ON COLUMN image_groups_to_be_deleted.reason IS
'MOVE_FAILED: the partial copy on the destination of a move that ended with failure; '
'SOURCE_AFTER_MOVE: the source copy of a moved disk whose deletion on the source was refused.';
COMMENT ON COLUMN image_groups_to_be_deleted.temporary_disk_id IS
'The temporary (To_Be_Deleted) disk of the move that left it (it may since have been removed).';
COMMENT ON COLUMN image_groups_to_be_deleted.wipe_after_delete IS
'postZero of Image.delete: the disk''s wipe_after_delete when the row was recorded.';
COMMENT ON COLUMN image_groups_to_be_deleted.attempts IS
'Deletions the agent failed so far (RecordImageGroupDeletionFailure); for the retry backoff.';
COMMENT ON COLUMN image_groups_to_be_deleted.last_attempt IS
'When the last failed deletion was recorded.';
COMMENT ON COLUMN image_groups_to_be_deleted.last_error IS
'The agent''s error for the last failed deletion.';
COMMENT ON COLUMN image_groups_to_be_deleted._create_date IS
'When the leftover was recorded.';

-- What release 1 left untracked: a failed move's partial copy on its destination (recorded
-- nowhere) and the source copy of a moved disk whose deletion was refused (recorded only by its
-- ILLEGAL temporary disk). Deleting an image group that is not there is harmless (the agent
-- answers ImageDoesNotExistInSD), so every ILLEGAL temporary disk gets its row.
WITH illegal AS (
    SELECT
        t.src_image_group_id,
        t.src_storage,
        t.dest_storage,
        tmp.image_group_id AS temporary_disk_id,
        min(t._create_date) AS created
    FROM images_to_be_deleted AS t
    INNER JOIN images AS tmp ON t.image_id = tmp.image_guid
    WHERE tmp.imagestatus = 4
    GROUP BY t.src_image_group_id, t.src_storage, t.dest_storage, tmp.image_group_id
),

live AS (
    SELECT DISTINCT
        i.image_group_id,
        m.storage_domain_id
    FROM images AS i
    INNER JOIN image_storage_domain_map AS m ON i.image_guid = m.image_id
    WHERE i.image_group_id IN (SELECT il.src_image_group_id FROM illegal AS il)
),

leftover AS (
    SELECT
        il.src_image_group_id AS image_group_id,
        il.temporary_disk_id,
        il.created,
        coalesce(b.wipe_after_delete, FALSE) AS wipe_after_delete,
        CASE WHEN on_src.image_group_id IS NULL THEN il.src_storage ELSE il.dest_storage END
            AS storage_domain_id,
        CASE WHEN on_src.image_group_id IS NULL THEN 'SOURCE_AFTER_MOVE' ELSE 'MOVE_FAILED' END
            AS reason,
        on_src.image_group_id IS NOT NULL AND on_dest.image_group_id IS NOT NULL AS on_both
    FROM illegal AS il
    LEFT JOIN base_disks AS b ON il.temporary_disk_id = b.disk_id
    LEFT JOIN live AS on_src
        ON
            il.src_image_group_id = on_src.image_group_id
            AND il.src_storage = on_src.storage_domain_id
    LEFT JOIN live AS on_dest
        ON
            il.src_image_group_id = on_dest.image_group_id
            AND il.dest_storage = on_dest.storage_domain_id
)

INSERT INTO image_groups_to_be_deleted (
    image_group_id, storage_domain_id, storage_pool_id, reason, temporary_disk_id,
    wipe_after_delete, _create_date
)
SELECT DISTINCT ON (lo.image_group_id, lo.storage_domain_id)
    lo.image_group_id,
    lo.storage_domain_id,
    p.storage_pool_id,
    lo.reason,
    lo.temporary_disk_id,
    lo.wipe_after_delete,
    lo.created
FROM leftover AS lo
LEFT JOIN storage_pool_iso_map AS p ON lo.storage_domain_id = p.storage_id
WHERE NOT lo.on_both
ORDER BY lo.image_group_id ASC, lo.storage_domain_id ASC, lo.created ASC;

-- Back to the session's timeouts for the rest of the deploy.
RESET statement_timeout;
RESET lock_timeout;
