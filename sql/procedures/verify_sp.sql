-- Verification for DBAs: read-only, STABLE checks that return one row per finding
-- (a verify_finding: check_name, severity, entity_type, entity_id, related_ids, message;
-- see verify_views.sql); a consistent database
-- returns no row. Run them from psql as movedisk_dba, on the primary or on a replica:
--     SELECT * FROM VerifyAll();
--     SELECT * FROM VerifyAll(v_leftover_age => INTERVAL '6 hours');
--     SELECT * FROM VerifyLockedImagesWithoutCommand();
-- A command is unfinished until its status is ENDED_SUCCESSFULLY or ENDED_WITH_FAILURE.
-- A LOCKED volume belongs to a command when business_entity_snapshot records it (its guid or
-- its disk's id as entity_id) for an unfinished command (CreateTemporaryDiskForMove does so).

-- VerifyTemporaryImagesWithoutRow: volumes of temporary (To_Be_Deleted) disks that have no
-- images_to_be_deleted row (the leftover they stand for is no longer known). A disk is taken for
-- temporary when another of its volumes has a row, or when it has no row at all but looks like
-- one phase 1 made: alias <A>_To_Be_Deleted, attached to no VM, and a disk aliased <A> exists
-- (a user's own disk named ..._To_Be_Deleted, attached or without such a twin, is no finding).
CREATE OR REPLACE FUNCTION VerifyTemporaryImagesWithoutRow()
RETURNS SETOF VERIFY_FINDING
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        'temporary_image_without_row'::TEXT,
        'error'::TEXT,
        'image'::TEXT,
        i.image_guid,
        ARRAY[i.image_group_id],
        format('volume %s of temporary disk %s (%s) has no images_to_be_deleted row',
               i.image_guid, i.image_group_id, b.disk_alias)
    FROM public.base_disks AS b
    INNER JOIN public.images AS i ON i.image_group_id = b.disk_id
    WHERE NOT EXISTS (SELECT 1 FROM public.images_to_be_deleted AS t WHERE t.image_id = i.image_guid)
      AND (
          EXISTS (
              SELECT 1
              FROM public.images AS sib
              INNER JOIN public.images_to_be_deleted AS t ON t.image_id = sib.image_guid
              WHERE sib.image_group_id = b.disk_id
          )
          OR (
              b.disk_alias LIKE '%\_To\_Be\_Deleted'
              AND NOT EXISTS (SELECT 1 FROM public.vm_device AS vd WHERE vd.device_id = b.disk_id)
              AND NOT EXISTS (
                  SELECT 1
                  FROM public.images AS sib
                  INNER JOIN public.images_to_be_deleted AS t ON t.image_id = sib.image_guid
                  WHERE sib.image_group_id = b.disk_id
              )
              AND EXISTS (
                  SELECT 1
                  FROM public.base_disks AS o
                  WHERE o.disk_alias = left(b.disk_alias, length(b.disk_alias) - 14)
                    AND o.disk_id <> b.disk_id
              )
          )
      );
END;
$procedure$;
GRANT EXECUTE ON FUNCTION VerifyTemporaryImagesWithoutRow() TO movedisk_dba;

-- VerifyRowsWithoutImage: images_to_be_deleted rows whose temporary image does not exist.
CREATE OR REPLACE FUNCTION VerifyRowsWithoutImage()
RETURNS SETOF VERIFY_FINDING
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        'row_without_image'::TEXT,
        'error'::TEXT,
        'images_to_be_deleted'::TEXT,
        t.image_id,
        ARRAY[t.src_image_id, t.src_image_group_id, t.src_storage],
        format('images_to_be_deleted row %s (source image %s on domain %s) has no temporary image',
               t.image_id, t.src_image_id, t.src_storage)
    FROM public.images_to_be_deleted AS t
    WHERE NOT EXISTS (SELECT 1 FROM public.images AS i WHERE i.image_guid = t.image_id);
END;
$procedure$;
GRANT EXECUTE ON FUNCTION VerifyRowsWithoutImage() TO movedisk_dba;

-- VerifyRowsWithoutSourceImage: images_to_be_deleted rows whose source image no longer exists
-- and whose source disk is not live on the source domain (IsImageGroupOnStorageDomain): the
-- leftover there must still be deleted (plan STORAGE_AND_DB). A source volume merged away while
-- the disk stays live on the source is no finding (that data is the live disk).
CREATE OR REPLACE FUNCTION VerifyRowsWithoutSourceImage()
RETURNS SETOF VERIFY_FINDING
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        'source_image_gone'::TEXT,
        'warning'::TEXT,
        'images_to_be_deleted'::TEXT,
        t.image_id,
        ARRAY[t.src_image_id, t.src_image_group_id, t.src_storage],
        format('temporary image %s stands for source image %s, which no longer exists; its '
               'leftover on domain %s is still to be deleted', t.image_id, t.src_image_id,
               t.src_storage)
    FROM public.images_to_be_deleted AS t
    WHERE NOT EXISTS (SELECT 1 FROM public.images AS i WHERE i.image_guid = t.src_image_id)
      AND NOT public.IsImageGroupOnStorageDomain(t.src_image_group_id, t.src_storage);
END;
$procedure$;
GRANT EXECUTE ON FUNCTION VerifyRowsWithoutSourceImage() TO movedisk_dba;

-- VerifyOldLeftovers: temporary disks older than v_leftover_age (stuck moves, or leftovers
-- nobody removed), one row per temporary disk; NULL means the default, 1 day.
CREATE OR REPLACE FUNCTION VerifyOldLeftovers(v_leftover_age INTERVAL DEFAULT INTERVAL '1 day')
RETURNS SETOF VERIFY_FINDING
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        'old_leftover'::TEXT,
        'warning'::TEXT,
        'disk'::TEXT,
        tmp.image_group_id,
        array_agg(t.image_id ORDER BY t.image_id),
        format('temporary disk %s (source disk %s, domain %s -> %s) is %s old',
               tmp.image_group_id, min(t.src_image_group_id::TEXT), min(t.src_storage::TEXT),
               min(t.dest_storage::TEXT), date_trunc('second', now() - min(t._create_date)))
    FROM public.images_to_be_deleted AS t
    INNER JOIN public.images AS tmp ON tmp.image_guid = t.image_id
    WHERE t._create_date < now() - coalesce(v_leftover_age, INTERVAL '1 day')
    GROUP BY tmp.image_group_id;
END;
$procedure$;
GRANT EXECUTE ON FUNCTION VerifyOldLeftovers(INTERVAL) TO movedisk_dba;

-- VerifyLockedImagesWithoutCommand: disks with LOCKED volumes that no unfinished command holds
-- (nothing will ever unlock them), one row per disk. A move started without a command
-- (CreateTemporaryDiskForMove without v_command_id) holds its disk and its temporary disk while
-- its temporary disk is LOCKED; VerifyOldLeftovers reports it once it is old.
CREATE OR REPLACE FUNCTION VerifyLockedImagesWithoutCommand()
RETURNS SETOF VERIFY_FINDING
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        'locked_image_without_command'::TEXT,
        'error'::TEXT,
        'disk'::TEXT,
        i.image_group_id,
        array_agg(i.image_guid ORDER BY i.image_guid),
        format('disk %s has %s LOCKED volume(s) that no unfinished command holds',
               i.image_group_id, count(*))
    FROM public.images AS i
    WHERE i.imagestatus = 2
      AND NOT EXISTS (
          SELECT 1
          FROM public.business_entity_snapshot AS b
          INNER JOIN public.command_entities AS c ON c.command_id = b.command_id
          WHERE b.entity_id IN (i.image_guid::TEXT, i.image_group_id::TEXT)
            AND coalesce(c.status, '') NOT IN ('ENDED_SUCCESSFULLY', 'ENDED_WITH_FAILURE')
      )
      AND NOT EXISTS (
          -- A move without a command: the LOCKED temporary disk of this disk, or this disk being
          -- that temporary disk, with no command snapshot recorded for it.
          SELECT 1
          FROM public.images_to_be_deleted AS t
          INNER JOIN public.images AS tmp ON tmp.image_guid = t.image_id
          WHERE (t.src_image_group_id = i.image_group_id OR tmp.image_group_id = i.image_group_id)
            AND tmp.imagestatus = 2
            AND NOT EXISTS (
                SELECT 1 FROM public.business_entity_snapshot AS b
                WHERE b.entity_id IN (tmp.image_guid::TEXT, tmp.image_group_id::TEXT)
            )
      )
    GROUP BY i.image_group_id;
END;
$procedure$;
GRANT EXECUTE ON FUNCTION VerifyLockedImagesWithoutCommand() TO movedisk_dba;

-- VerifyCommandsWithoutTask: unfinished commands older than v_command_age with no storage task
-- (async_tasks) and no unfinished child command: nothing is left to finish them; NULL means the
-- default, 5 minutes.
CREATE OR REPLACE FUNCTION VerifyCommandsWithoutTask(
    v_command_age INTERVAL DEFAULT INTERVAL '5 minutes'
)
RETURNS SETOF VERIFY_FINDING
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        'command_without_task'::TEXT,
        'error'::TEXT,
        'command'::TEXT,
        c.command_id,
        ARRAY[]::UUID [],
        format('command %s (type %s, status %s, created %s) is unfinished and has no live task',
               c.command_id, c.command_type, coalesce(c.status, 'NULL'), c.created_at)
    FROM public.command_entities AS c
    WHERE coalesce(c.status, '') NOT IN ('ENDED_SUCCESSFULLY', 'ENDED_WITH_FAILURE')
      AND coalesce(c.created_at, '-infinity') < now() - coalesce(v_command_age, INTERVAL '5 minutes')
      AND NOT EXISTS (
          SELECT 1 FROM public.async_tasks AS a
          WHERE a.command_id = c.command_id OR a.root_command_id = c.command_id
      )
      AND NOT EXISTS (
          SELECT 1 FROM public.command_entities AS child
          WHERE (child.parent_command_id = c.command_id OR child.root_command_id = c.command_id)
            AND child.command_id <> c.command_id
            AND coalesce(child.status, '') NOT IN ('ENDED_SUCCESSFULLY', 'ENDED_WITH_FAILURE')
      );
END;
$procedure$;
GRANT EXECUTE ON FUNCTION VerifyCommandsWithoutTask(INTERVAL) TO movedisk_dba;

-- VerifyImageGroupsOnTwoDomains: disks whose volumes are mapped to more than one domain while no
-- move of them is in flight (templates' disks, copied to several domains, are exempt).
CREATE OR REPLACE FUNCTION VerifyImageGroupsOnTwoDomains()
RETURNS SETOF VERIFY_FINDING
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        'image_group_on_two_domains'::TEXT,
        'error'::TEXT,
        'disk'::TEXT,
        i.image_group_id,
        array_agg(DISTINCT m.storage_domain_id),
        format('disk %s is mapped to %s storage domains outside a move',
               i.image_group_id, count(DISTINCT m.storage_domain_id))
    FROM public.images AS i
    INNER JOIN public.image_storage_domain_map AS m ON m.image_id = i.image_guid
    WHERE i.image_group_id IS NOT NULL
      AND NOT EXISTS (
          SELECT 1
          FROM public.vm_device AS vd
          INNER JOIN public.vm_static AS vs ON vs.vm_guid = vd.vm_id
          WHERE vd.device_id = i.image_group_id AND vs.entity_type = 'TEMPLATE'
      )
      AND NOT EXISTS (
          SELECT 1
          FROM public.images_to_be_deleted AS t
          INNER JOIN public.images AS tmp ON tmp.image_guid = t.image_id
          WHERE t.src_image_group_id = i.image_group_id AND tmp.imagestatus = 2
      )
    GROUP BY i.image_group_id
    HAVING count(DISTINCT m.storage_domain_id) > 1;
END;
$procedure$;
GRANT EXECUTE ON FUNCTION VerifyImageGroupsOnTwoDomains() TO movedisk_dba;

-- VerifyQuotaUsage: usage charged where the images say it should not be: the volumes of one disk
-- on one domain charged to different quotas, a volume charged to a quota of another data center
-- than its domain's, or a temporary volume charged to another quota than its source volume.
CREATE OR REPLACE FUNCTION VerifyQuotaUsage()
RETURNS SETOF VERIFY_FINDING
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        'quota_usage_mismatch'::TEXT,
        'warning'::TEXT,
        'disk'::TEXT,
        i.image_group_id,
        array_agg(DISTINCT m.quota_id) FILTER (WHERE m.quota_id IS NOT NULL),
        format('disk %s on domain %s is charged to %s different quotas', i.image_group_id,
               m.storage_domain_id, count(DISTINCT coalesce(m.quota_id::TEXT, 'none')))
    FROM public.images AS i
    INNER JOIN public.image_storage_domain_map AS m ON m.image_id = i.image_guid
    GROUP BY i.image_group_id, m.storage_domain_id
    HAVING count(DISTINCT coalesce(m.quota_id::TEXT, 'none')) > 1;

    RETURN QUERY
    SELECT
        'quota_usage_mismatch'::TEXT,
        'warning'::TEXT,
        'image'::TEXT,
        m.image_id,
        ARRAY[m.quota_id, m.storage_domain_id],
        format('volume %s on domain %s (data center %s) is charged to quota %s of data center %s',
               m.image_id, m.storage_domain_id, p.storage_pool_id, m.quota_id, q.storage_pool_id)
    FROM public.image_storage_domain_map AS m
    INNER JOIN public.quota AS q ON q.id = m.quota_id
    INNER JOIN public.storage_pool_iso_map AS p ON p.storage_id = m.storage_domain_id
    WHERE p.storage_pool_id <> q.storage_pool_id;

    RETURN QUERY
    SELECT
        'quota_usage_mismatch'::TEXT,
        'warning'::TEXT,
        'image'::TEXT,
        t.image_id,
        ARRAY[tm.quota_id, sm.quota_id],
        format('temporary volume %s is charged to quota %s, its source volume %s to quota %s',
               t.image_id, coalesce(tm.quota_id::TEXT, 'none'), t.src_image_id,
               coalesce(sm.quota_id::TEXT, 'none'))
    FROM public.images_to_be_deleted AS t
    INNER JOIN public.image_storage_domain_map AS tm
        ON tm.image_id = t.image_id AND tm.storage_domain_id = t.src_storage
    INNER JOIN LATERAL (
        SELECT x.quota_id
        FROM public.image_storage_domain_map AS x
        WHERE x.image_id = t.src_image_id
        ORDER BY x.storage_domain_id = t.src_storage DESC
        LIMIT 1
    ) AS sm ON TRUE
    WHERE tm.quota_id IS DISTINCT FROM sm.quota_id;
END;
$procedure$;
GRANT EXECUTE ON FUNCTION VerifyQuotaUsage() TO movedisk_dba;

-- VerifyImageGroupsToBeDeleted: pending storage deletions (image_groups_to_be_deleted) that
-- would delete a live disk (the disk is live on that domain: an error, never delete it), and
-- those older than v_leftover_age (the cleanup keeps failing: a warning with its last error).
CREATE OR REPLACE FUNCTION VerifyImageGroupsToBeDeleted(
    v_leftover_age INTERVAL DEFAULT INTERVAL '1 day'
)
RETURNS SETOF VERIFY_FINDING
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        'deletion_of_live_disk'::TEXT,
        'error'::TEXT,
        'disk'::TEXT,
        g.image_group_id,
        ARRAY[g.storage_domain_id],
        format('disk %s is live on storage domain %s, where a deletion (%s) is pending: do not '
               'delete it; check the storage and the row', g.image_group_id, g.storage_domain_id,
               g.reason)
    FROM public.image_groups_to_be_deleted AS g
    WHERE public.IsImageGroupOnStorageDomain(g.image_group_id, g.storage_domain_id);

    RETURN QUERY
    SELECT
        'old_storage_deletion'::TEXT,
        'warning'::TEXT,
        'disk'::TEXT,
        g.image_group_id,
        ARRAY[g.storage_domain_id],
        format('disk %s is still to be deleted on storage domain %s (%s) after %s, %s failed '
               'attempt(s)%s', g.image_group_id, g.storage_domain_id, g.reason,
               date_trunc('second', now() - g._create_date), g.attempts,
               coalesce(': ' || g.last_error, ''))
    FROM public.image_groups_to_be_deleted AS g
    WHERE g._create_date < now() - coalesce(v_leftover_age, INTERVAL '1 day');
END;
$procedure$;
GRANT EXECUTE ON FUNCTION VerifyImageGroupsToBeDeleted(INTERVAL) TO movedisk_dba;

-- VerifyImageMoveLinks: image_move_links rows out of step with images_to_be_deleted (the rows
-- its trigger would have made, image_move_links_expected_view; leftover ids compared as a
-- sorted list), missing or extra; the lookups (images_storage_domain_view) read the links.
CREATE OR REPLACE FUNCTION VerifyImageMoveLinks()
RETURNS SETOF VERIFY_FINDING
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    WITH actual AS (
        SELECT
            m.image_id,
            m.src_image_id,
            m.src_image_group_id,
            m.src_storage,
            m.dest_storage,
            CASE WHEN m.leftover_image_ids IS NOT NULL THEN ARRAY(
                SELECT x.id FROM unnest(m.leftover_image_ids) AS x (id) ORDER BY x.id
            ) END AS leftover_image_ids
        FROM public.image_move_links AS m
    )
    SELECT
        'move_link_out_of_step'::TEXT,
        'error'::TEXT,
        'image_move_links'::TEXT,
        coalesce(a.image_id, e.image_id),
        coalesce(e.leftover_image_ids, '{}'::UUID []) || coalesce(a.leftover_image_ids, '{}'::UUID []),
        CASE
            WHEN a.image_id IS NULL THEN format(
                'image %s has no image_move_links row; images_to_be_deleted says source %s, '
                'leftovers %s', e.image_id, e.src_image_id, e.leftover_image_ids
            )
            WHEN e.image_id IS NULL THEN format(
                'image_move_links row %s (source %s, leftovers %s) matches no images_to_be_deleted '
                'row', a.image_id, a.src_image_id, a.leftover_image_ids
            )
            ELSE format(
                'image_move_links row %s says source %s (disk %s, %s -> %s), leftovers %s; '
                'images_to_be_deleted says source %s (disk %s, %s -> %s), leftovers %s',
                a.image_id, a.src_image_id, a.src_image_group_id, a.src_storage, a.dest_storage,
                a.leftover_image_ids, e.src_image_id, e.src_image_group_id, e.src_storage,
                e.dest_storage, e.leftover_image_ids
            )
        END
    FROM actual AS a
    FULL JOIN public.image_move_links_expected_view AS e ON a.image_id = e.image_id
    WHERE a.image_id IS NULL
       OR e.image_id IS NULL
       OR a.src_image_id IS DISTINCT FROM e.src_image_id
       OR a.src_image_group_id IS DISTINCT FROM e.src_image_group_id
       OR a.src_storage IS DISTINCT FROM e.src_storage
       OR a.dest_storage IS DISTINCT FROM e.dest_storage
       OR a.leftover_image_ids IS DISTINCT FROM e.leftover_image_ids;
END;
$procedure$;
GRANT EXECUTE ON FUNCTION VerifyImageMoveLinks() TO movedisk_dba;

-- VerifyAll: every check above, errors first.
CREATE OR REPLACE FUNCTION VerifyAll(
    v_leftover_age INTERVAL DEFAULT INTERVAL '1 day',
    v_command_age INTERVAL DEFAULT INTERVAL '5 minutes'
)
RETURNS SETOF VERIFY_FINDING
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT f.*
    FROM (
        SELECT * FROM public.VerifyTemporaryImagesWithoutRow()
        UNION ALL
        SELECT * FROM public.VerifyRowsWithoutImage()
        UNION ALL
        SELECT * FROM public.VerifyRowsWithoutSourceImage()
        UNION ALL
        SELECT * FROM public.VerifyImageMoveLinks()
        UNION ALL
        SELECT * FROM public.VerifyOldLeftovers(v_leftover_age)
        UNION ALL
        SELECT * FROM public.VerifyImageGroupsToBeDeleted(v_leftover_age)
        UNION ALL
        SELECT * FROM public.VerifyLockedImagesWithoutCommand()
        UNION ALL
        SELECT * FROM public.VerifyCommandsWithoutTask(v_command_age)
        UNION ALL
        SELECT * FROM public.VerifyImageGroupsOnTwoDomains()
        UNION ALL
        SELECT * FROM public.VerifyQuotaUsage()
    ) AS f
    ORDER BY f.severity = 'error' DESC, f.check_name, f.entity_id;
END;
$procedure$;
GRANT EXECUTE ON FUNCTION VerifyAll(INTERVAL, INTERVAL) TO movedisk_dba;
