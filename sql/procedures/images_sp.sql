-- images: volumes (oVirt images_sp.sql names and parameters).

-- InsertImage: adds a volume.
CREATE OR REPLACE FUNCTION InsertImage(
    v_creation_date TIMESTAMP WITH TIME ZONE,
    v_image_guid UUID,
    v_it_guid UUID,
    v_size BIGINT,
    v_parentid UUID,
    v_imagestatus INTEGER,
    v_lastmodified TIMESTAMP WITH TIME ZONE,
    v_vm_snapshot_id UUID,
    v_volume_type INTEGER,
    v_volume_format INTEGER,
    v_image_group_id UUID,
    v_active BOOLEAN,
    v_volume_classification SMALLINT,
    v_sequence_number INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.images (
        creation_date,
        image_guid,
        it_guid,
        size,
        parentid,
        imagestatus,
        lastmodified,
        vm_snapshot_id,
        volume_type,
        volume_format,
        image_group_id,
        active,
        volume_classification,
        sequence_number
    )
    VALUES (
        v_creation_date,
        v_image_guid,
        v_it_guid,
        v_size,
        v_parentid,
        v_imagestatus,
        v_lastmodified,
        v_vm_snapshot_id,
        v_volume_type,
        v_volume_format,
        v_image_group_id,
        v_active,
        v_volume_classification,
        v_sequence_number
    );
END;
$procedure$;

-- UpdateImage: rewrites every field of a volume.
CREATE OR REPLACE FUNCTION UpdateImage(
    v_creation_date TIMESTAMP WITH TIME ZONE,
    v_image_guid UUID,
    v_it_guid UUID,
    v_size BIGINT,
    v_parentid UUID,
    v_imagestatus INTEGER,
    v_lastmodified TIMESTAMP WITH TIME ZONE,
    v_vm_snapshot_id UUID,
    v_volume_type INTEGER,
    v_volume_format INTEGER,
    v_image_group_id UUID,
    v_active BOOLEAN,
    v_volume_classification SMALLINT,
    v_qcow_compat INTEGER,
    v_sequence_number INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.images
    SET
        creation_date = v_creation_date,
        it_guid = v_it_guid,
        size = v_size,
        parentid = v_parentid,
        imagestatus = v_imagestatus,
        lastmodified = v_lastmodified,
        vm_snapshot_id = v_vm_snapshot_id,
        volume_type = v_volume_type,
        volume_format = v_volume_format,
        image_group_id = v_image_group_id,
        active = v_active,
        volume_classification = v_volume_classification,
        qcow_compat = v_qcow_compat,
        sequence_number = v_sequence_number,
        _update_date = LOCALTIMESTAMP
    WHERE image_guid = v_image_guid;
END;
$procedure$;

-- UpdateImageStatus: sets the status (OK=1, LOCKED=2, ILLEGAL=4) of one volume.
CREATE OR REPLACE FUNCTION UpdateImageStatus(
    v_image_id UUID,
    v_status INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.images
    SET imagestatus = v_status
    WHERE image_guid = v_image_id;
END;
$procedure$;

-- UpdateStatusOfImagesByImageGroupId: sets the status of every volume of a disk.
CREATE OR REPLACE FUNCTION UpdateStatusOfImagesByImageGroupId(
    v_image_group_id UUID,
    v_status INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.images
    SET imagestatus = v_status
    WHERE image_group_id = v_image_group_id;
END;
$procedure$;

-- UpdateImageVmSnapshotId: moves a volume to another VM snapshot.
CREATE OR REPLACE FUNCTION UpdateImageVmSnapshotId(
    v_image_id UUID,
    v_vm_snapshot_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.images
    SET vm_snapshot_id = v_vm_snapshot_id
    WHERE image_guid = v_image_id;
END;
$procedure$;

-- UpdateImageSize: records a volume's new virtual size.
CREATE OR REPLACE FUNCTION UpdateImageSize(
    v_image_id UUID,
    v_size BIGINT,
    v_lastmodified TIMESTAMP WITH TIME ZONE
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.images
    SET
        size = v_size,
        lastmodified = v_lastmodified
    WHERE image_guid = v_image_id;
END;
$procedure$;

-- DeleteImage: removes a volume (its storage domain map rows go with it).
CREATE OR REPLACE FUNCTION DeleteImage(
    v_image_guid UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.images
    WHERE image_guid = v_image_guid;
END;
$procedure$;

-- GetAllFromImages: every volume row.
CREATE OR REPLACE FUNCTION GetAllFromImages()
RETURNS SETOF IMAGES
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.images;
END;
$procedure$;

-- GetImageByImageId: the bare images row of a volume.
CREATE OR REPLACE FUNCTION GetImageByImageId(
    v_image_guid UUID
)
RETURNS SETOF IMAGES
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.images
    WHERE image_guid = v_image_guid;
END;
$procedure$;

-- GetMaxSequenceNumber: the highest sequence number among a disk's volumes.
CREATE OR REPLACE FUNCTION GetMaxSequenceNumber(
    v_image_group_id UUID
)
RETURNS INTEGER
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN (
        SELECT MAX(sequence_number)
        FROM public.images
        WHERE image_group_id = v_image_group_id
    );
END;
$procedure$;
