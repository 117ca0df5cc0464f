-- images_to_be_deleted: the rows of the temporary (To_Be_Deleted) images of disk moves,
-- the storage-match procedure ([1] of the specification) and the removal plan.
-- Errors: MD001 no image has that id, MD006 the image exists but is not temporary.
--
-- One definition of "the source data on S is the live disk", at the level of what the storage
-- agent deletes (Image.delete takes an image group): a row (G, S) in
-- image_group_storage_domain_view (disk_views.sql), true while any volume of disk G is mapped on
-- domain S. IsImageGroupOnStorageDomain(G, S) asks it; the storage-match procedure,
-- RemoveTemporaryDisk, MarkTemporaryDiskIllegal, the pending deletions and the verify checks all
-- answer by that function; the removal plan reads the view in its own query (no nested call).
-- A snapshot merge that removes one source volume changes nothing.

-- InsertImageToBeDeleted: records that temporary image v_image_id stands for v_src_image_id.
CREATE OR REPLACE FUNCTION InsertImageToBeDeleted(
    v_image_id UUID,
    v_src_image_id UUID,
    v_src_image_group_id UUID,
    v_src_storage UUID,
    v_dest_storage UUID
)
RETURNS VOID
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.images_to_be_deleted (
        image_id, src_image_id, src_image_group_id, src_storage, dest_storage
    )
    VALUES (v_image_id, v_src_image_id, v_src_image_group_id, v_src_storage, v_dest_storage);
END;
$procedure$;

-- DeleteImageToBeDeleted: forgets the row of temporary image v_image_id (the image stays).
CREATE OR REPLACE FUNCTION DeleteImageToBeDeleted(v_image_id UUID)
RETURNS VOID
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.images_to_be_deleted AS t
    WHERE t.image_id = v_image_id;
END;
$procedure$;

-- GetImageToBeDeletedByImageId: the row of temporary image v_image_id (none if not temporary).
CREATE OR REPLACE FUNCTION GetImageToBeDeletedByImageId(v_image_id UUID)
RETURNS SETOF IMAGES_TO_BE_DELETED
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT t.*
    FROM public.images_to_be_deleted AS t
    WHERE t.image_id = v_image_id;
END;
$procedure$;

-- GetAllFromImagesToBeDeleted: every temporary image's row, oldest first.
CREATE OR REPLACE FUNCTION GetAllFromImagesToBeDeleted()
RETURNS SETOF IMAGES_TO_BE_DELETED
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT t.*
    FROM public.images_to_be_deleted AS t
    ORDER BY t._create_date, t.image_id;
END;
$procedure$;

-- GetImagesToBeDeletedBySrcImageGroupId: the temporary images standing for volumes of that disk.
CREATE OR REPLACE FUNCTION GetImagesToBeDeletedBySrcImageGroupId(v_src_image_group_id UUID)
RETURNS SETOF IMAGES_TO_BE_DELETED
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT t.*
    FROM public.images_to_be_deleted AS t
    WHERE t.src_image_group_id = v_src_image_group_id;
END;
$procedure$;

-- GetImagesToBeDeletedBySrcImageId: the temporary images standing for that source volume.
CREATE OR REPLACE FUNCTION GetImagesToBeDeletedBySrcImageId(v_src_image_id UUID)
RETURNS SETOF IMAGES_TO_BE_DELETED
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT t.*
    FROM public.images_to_be_deleted AS t
    WHERE t.src_image_id = v_src_image_id;
END;
$procedure$;

-- GetImagesToBeDeletedBySrcStorage: the temporary images whose leftover is on that domain.
CREATE OR REPLACE FUNCTION GetImagesToBeDeletedBySrcStorage(v_src_storage UUID)
RETURNS SETOF IMAGES_TO_BE_DELETED
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT t.*
    FROM public.images_to_be_deleted AS t
    WHERE t.src_storage = v_src_storage;
END;
$procedure$;

-- GetImagesToBeDeletedByImageGroupId: the rows of the volumes of temporary disk v_image_group_id.
CREATE OR REPLACE FUNCTION GetImagesToBeDeletedByImageGroupId(v_image_group_id UUID)
RETURNS SETOF IMAGES_TO_BE_DELETED
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT t.*
    FROM public.images AS i
    INNER JOIN public.images_to_be_deleted AS t ON t.image_id = i.image_guid
    WHERE i.image_group_id = v_image_group_id;
END;
$procedure$;

-- IsImageGroupOnStorageDomain: is any volume of disk v_image_group_id mapped on storage domain
-- v_storage_domain_id? The package's one definition of "the data of that image group on that
-- domain is the live disk": when true, the agent must never delete the image group there.
CREATE OR REPLACE FUNCTION IsImageGroupOnStorageDomain(
    v_image_group_id UUID,
    v_storage_domain_id UUID
)
RETURNS BOOLEAN
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN EXISTS (
        SELECT 1
        FROM public.image_group_storage_domain_view AS v
        WHERE v.image_group_id = v_image_group_id AND v.storage_domain_id = v_storage_domain_id
    );
END;
$procedure$;

-- GetSourceImageOnSourceStorage: the storage-match procedure [1] of the specification: for
-- temporary image v_image_id, its source image, disk, domain and pool when the source disk is
-- still live on the source domain (IsImageGroupOnStorageDomain(src_image_group_id, src_storage):
-- any of its volumes mapped there, so the data there must never be deleted); no row otherwise.
-- src_image_id is the volume recorded at phase 1 (a later snapshot merge may have removed it).
CREATE OR REPLACE FUNCTION GetSourceImageOnSourceStorage(v_image_id UUID)
RETURNS TABLE (
    src_image_id UUID,
    src_image_group_id UUID,
    src_storage UUID,
    storage_pool_id UUID
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT t.src_image_id, t.src_image_group_id, t.src_storage, p.storage_pool_id
    FROM public.images_to_be_deleted AS t
    LEFT JOIN public.storage_pool_iso_map AS p ON p.storage_id = t.src_storage
    WHERE t.image_id = v_image_id
      AND public.IsImageGroupOnStorageDomain(t.src_image_group_id, t.src_storage);
END;
$procedure$;

-- IsSourceImageOnSourceStorage: the storage-match procedure [1] as a yes/no: is the source disk
-- of temporary image v_image_id still live on its source domain (the same answer as
-- GetSourceImageOnSourceStorage finding a row)? True: removing the temporary disk removes rows
-- only. False for an id that is not a temporary image.
CREATE OR REPLACE FUNCTION IsSourceImageOnSourceStorage(v_image_id UUID)
RETURNS BOOLEAN
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN coalesce((
        SELECT public.IsImageGroupOnStorageDomain(t.src_image_group_id, t.src_storage)
        FROM public.images_to_be_deleted AS t
        WHERE t.image_id = v_image_id
    ), FALSE);
END;
$procedure$;

-- GetImageToBeDeletedRemovalPlan: what removing temporary image v_image_id must do.
-- DB_ONLY: the source disk is live on the source domain (IsSourceImageOnSourceStorage), so the
-- data there is the original (never delete it); only the rows go. STORAGE_AND_DB: the source disk
-- left the source domain; the agent deletes image group src_image_group_id on storage_domain_id
-- (Image.delete(sdUUID, spUUID, imgUUID, postZero = wipe_after_delete)), then
-- RemoveTemporaryDisk(v_storage_deleted => TRUE). delete_on_storage_domain_ids: every domain on
-- which the agent still has to delete src_image_group_id for this disk, sorted: the source domain
-- for STORAGE_AND_DB, and each pending image_groups_to_be_deleted row (a failed move's partial
-- copy on its destination: ConfirmImageGroupDeleted once deleted); never a domain where it is live.
-- One query when no other deletion of the disk is pending (the usual case): live is an EXISTS on
-- image_group_storage_domain_view in the plan, no nested call. Pending deletions elsewhere, or no
-- row (MD001 no such image, MD006 not temporary), take the second, complete query.
CREATE OR REPLACE FUNCTION GetImageToBeDeletedRemovalPlan(v_image_id UUID)
RETURNS TABLE (
    image_id UUID,
    image_group_id UUID,
    removal TEXT,
    storage_pool_id UUID,
    storage_domain_id UUID,
    src_image_group_id UUID,
    src_image_id UUID,
    wipe_after_delete BOOLEAN,
    imagestatus INTEGER,
    delete_on_storage_domain_ids UUID[]
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_on_src BOOLEAN;
    v_pending UUID[];
    v_at INTEGER;
BEGIN
    -- The usual case: nothing else pending for the disk, so the list is the source domain or
    -- nothing. The sub-select computes live once (OFFSET 0 keeps it from being pulled up and
    -- its EXISTS copied into both columns that read it).
    RETURN QUERY
    SELECT
        s.image_id,
        s.image_group_id,
        CASE WHEN s.live THEN 'DB_ONLY' ELSE 'STORAGE_AND_DB' END,
        -- One row whatever storage_pool_iso_map holds (as the complete query's SELECT INTO).
        (
            SELECT p.storage_pool_id
            FROM public.storage_pool_iso_map AS p
            WHERE p.storage_id = s.src_storage
            LIMIT 1
        ),
        s.src_storage,
        s.src_image_group_id,
        s.src_image_id,
        coalesce(b.wipe_after_delete, FALSE),
        s.imagestatus,
        CASE WHEN s.live THEN '{}'::UUID [] ELSE ARRAY[s.src_storage] END
    FROM (
        SELECT
            t.image_id,
            tmp.image_group_id,
            tmp.imagestatus,
            t.src_storage,
            t.src_image_group_id,
            t.src_image_id,
            EXISTS (
                SELECT 1
                FROM public.image_group_storage_domain_view AS v
                WHERE v.image_group_id = t.src_image_group_id
                  AND v.storage_domain_id = t.src_storage
            ) AS live
        FROM public.images_to_be_deleted AS t
        INNER JOIN public.images AS tmp ON tmp.image_guid = t.image_id
        WHERE t.image_id = v_image_id
          AND NOT EXISTS (
              SELECT 1
              FROM public.image_groups_to_be_deleted AS g
              WHERE g.image_group_id = t.src_image_group_id
                AND g.storage_domain_id <> t.src_storage
          )
        OFFSET 0
    ) AS s
    LEFT JOIN public.base_disks AS b ON b.disk_id = s.image_group_id;
    IF FOUND THEN
        RETURN;
    END IF;

    -- Other deletions of the disk pending (or no such temporary image): the complete list.
    SELECT
        t.image_id,
        tmp.image_group_id,
        EXISTS (
            SELECT 1
            FROM public.image_group_storage_domain_view AS v
            WHERE v.image_group_id = t.src_image_group_id AND v.storage_domain_id = t.src_storage
        ),
        p.storage_pool_id,
        t.src_storage,
        t.src_image_group_id,
        t.src_image_id,
        coalesce(b.wipe_after_delete, FALSE),
        tmp.imagestatus,
        -- Pending deletions elsewhere (the primary key's order), never where G is live.
        ARRAY(
            SELECT g.storage_domain_id
            FROM public.image_groups_to_be_deleted AS g
            WHERE g.image_group_id = t.src_image_group_id
              AND g.storage_domain_id <> t.src_storage
              AND NOT EXISTS (
                  SELECT 1
                  FROM public.image_group_storage_domain_view AS v
                  WHERE v.image_group_id = g.image_group_id
                    AND v.storage_domain_id = g.storage_domain_id
              )
            ORDER BY g.storage_domain_id
        )
    INTO image_id, image_group_id, v_on_src, storage_pool_id, storage_domain_id,
        src_image_group_id, src_image_id, wipe_after_delete, imagestatus, v_pending
    FROM public.images_to_be_deleted AS t
    INNER JOIN public.images AS tmp ON tmp.image_guid = t.image_id
    LEFT JOIN public.base_disks AS b ON b.disk_id = tmp.image_group_id
    LEFT JOIN public.storage_pool_iso_map AS p ON p.storage_id = t.src_storage
    WHERE t.image_id = v_image_id;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM public.images AS i WHERE i.image_guid = v_image_id) THEN
            RAISE EXCEPTION 'no image has id %', v_image_id USING ERRCODE = 'MD001';
        END IF;
        RAISE EXCEPTION 'image % is not a temporary (To_Be_Deleted) image', v_image_id
            USING ERRCODE = 'MD006';
    END IF;
    IF v_on_src THEN
        removal := 'DB_ONLY';
        delete_on_storage_domain_ids := v_pending;
    ELSE
        -- The source domain too, in its place in the sorted list.
        removal := 'STORAGE_AND_DB';
        v_at := width_bucket(storage_domain_id, v_pending);
        delete_on_storage_domain_ids :=
            v_pending[:v_at] || storage_domain_id || v_pending[v_at + 1:];
    END IF;
    RETURN NEXT;
END;
$procedure$;

-- SyncImageMoveLinks: the trigger keeping image_move_links in step with images_to_be_deleted.
-- For each row removed (DELETE, or the old row of an UPDATE of a linking column): the temporary
-- volume's own link loses its source columns and the source volume's link loses the temporary id;
-- a link left with neither goes. For each row added: the temporary volume's link gets the source
-- columns and the source volume's link the temporary id. Safe against concurrent writers in READ
-- COMMITTED without relying on their locks: the append is one INSERT ... ON CONFLICT DO UPDATE,
-- each removal a single-row DELETE (when the link would be left empty) or UPDATE, each applied
-- to the row's latest version (re-checked after a wait), so no element is lost; a link that a
-- concurrent writer emptied between the two is deleted after the UPDATE. One statement per link
-- in the usual case (two links per row). The phase functions write images_to_be_deleted only
-- after locking the source disk's volumes (move_disk_sp.sql), so two moves' link writes for the
-- same source volume never interleave (no lock cycle); the trigger takes no other lock.
CREATE OR REPLACE FUNCTION SyncImageMoveLinks()
RETURNS TRIGGER
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_empty BOOLEAN;
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        -- The temporary volume's link: usually it has no leftover of its own and goes whole.
        DELETE FROM public.image_move_links AS l
        WHERE l.image_id = OLD.image_id AND l.leftover_image_ids IS NULL;
        IF NOT FOUND THEN
            UPDATE public.image_move_links AS l
            SET src_image_id = NULL, src_image_group_id = NULL, src_storage = NULL,
                dest_storage = NULL
            WHERE l.image_id = OLD.image_id
            RETURNING l.leftover_image_ids IS NULL INTO v_empty;
            IF v_empty THEN  -- its leftovers went meanwhile (a concurrent writer)
                DELETE FROM public.image_move_links AS l
                WHERE l.image_id = OLD.image_id
                  AND l.src_image_id IS NULL AND l.leftover_image_ids IS NULL;
            END IF;
        END IF;
        -- The source volume's link: usually this was its only leftover and it goes whole.
        DELETE FROM public.image_move_links AS l
        WHERE l.image_id = OLD.src_image_id
          AND l.src_image_id IS NULL
          AND l.leftover_image_ids = ARRAY[OLD.image_id];
        IF NOT FOUND THEN
            UPDATE public.image_move_links AS l
            SET leftover_image_ids =
                nullif(array_remove(l.leftover_image_ids, OLD.image_id), '{}')
            WHERE l.image_id = OLD.src_image_id
            RETURNING l.src_image_id IS NULL AND l.leftover_image_ids IS NULL INTO v_empty;
            IF v_empty THEN
                DELETE FROM public.image_move_links AS l
                WHERE l.image_id = OLD.src_image_id
                  AND l.src_image_id IS NULL AND l.leftover_image_ids IS NULL;
            END IF;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO public.image_move_links AS l (
            image_id, src_image_id, src_image_group_id, src_storage, dest_storage
        )
        VALUES (
            NEW.image_id, NEW.src_image_id, NEW.src_image_group_id, NEW.src_storage,
            NEW.dest_storage
        )
        ON CONFLICT (image_id) DO UPDATE
        SET src_image_id = excluded.src_image_id,
            src_image_group_id = excluded.src_image_group_id,
            src_storage = excluded.src_storage,
            dest_storage = excluded.dest_storage;
        INSERT INTO public.image_move_links AS l (image_id, leftover_image_ids)
        VALUES (NEW.src_image_id, ARRAY[NEW.image_id])
        ON CONFLICT (image_id) DO UPDATE
        SET leftover_image_ids = array_append(l.leftover_image_ids, NEW.image_id);
    END IF;
    RETURN NULL;
END;
$procedure$;

-- RebuildImageMoveLinks: puts image_move_links back in step with images_to_be_deleted, for a
-- DBA after a restore or bulk load that bypassed the trigger (VerifyImageMoveLinks' findings,
-- move_link_out_of_step); answers how many links were out of step (0: nothing was changed).
-- Writers of images_to_be_deleted wait for it (SHARE lock); lookups do not.
CREATE OR REPLACE FUNCTION RebuildImageMoveLinks()
RETURNS INTEGER
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_out INTEGER;
BEGIN
    LOCK TABLE public.images_to_be_deleted IN SHARE MODE;
    SELECT count(*) INTO v_out FROM public.VerifyImageMoveLinks() AS f;
    IF v_out = 0 THEN
        RETURN 0;
    END IF;
    DELETE FROM public.image_move_links AS l WHERE l.image_id IS NOT NULL;
    INSERT INTO public.image_move_links (
        image_id, src_image_id, src_image_group_id, src_storage, dest_storage,
        leftover_image_ids
    )
    SELECT
        e.image_id, e.src_image_id, e.src_image_group_id, e.src_storage, e.dest_storage,
        e.leftover_image_ids
    FROM public.image_move_links_expected_view AS e;
    RETURN v_out;
END;
$procedure$;

-- The trigger itself is stored state of the package's table images_to_be_deleted: created here
-- when missing (a fresh install, upgrade 0005, or one dropped by hand), left alone otherwise (a
-- redeploy takes no lock on the table).
DO $image_move_links_trigger$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_catalog.pg_trigger AS t
        WHERE t.tgrelid = 'public.images_to_be_deleted'::pg_catalog.regclass
          AND t.tgname = 'trg_images_to_be_deleted_image_move_links'
    ) THEN
        CREATE TRIGGER trg_images_to_be_deleted_image_move_links
        AFTER INSERT OR DELETE OR UPDATE OF
        image_id, src_image_id, src_image_group_id, src_storage, dest_storage
        ON public.images_to_be_deleted
        FOR EACH ROW EXECUTE FUNCTION public.SyncImageMoveLinks();
    END IF;
END
$image_move_links_trigger$;
