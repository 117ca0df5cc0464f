-- VM devices (disk attachments) (oVirt vm_device_sp.sql names and parameters).

-- InsertVmDevice: adds a device to a VM or template.
CREATE OR REPLACE FUNCTION InsertVmDevice(
    v_device_id UUID,
    v_vm_id UUID,
    v_device VARCHAR(255),
    v_type VARCHAR(30),
    v_address VARCHAR(255),
    v_spec_params TEXT,
    v_is_managed BOOLEAN,
    v_is_plugged BOOLEAN,
    v_is_readonly BOOLEAN,
    v_alias VARCHAR(255),
    v_custom_properties TEXT,
    v_snapshot_id UUID,
    v_logical_name VARCHAR(255),
    v_host_device VARCHAR(255)
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.vm_device (
        device_id,
        vm_id,
        device,
        type,
        address,
        spec_params,
        is_managed,
        is_plugged,
        is_readonly,
        alias,
        custom_properties,
        snapshot_id,
        logical_name,
        host_device
    )
    VALUES (
        v_device_id,
        v_vm_id,
        v_device,
        v_type,
        v_address,
        v_spec_params,
        v_is_managed,
        v_is_plugged,
        v_is_readonly,
        v_alias,
        v_custom_properties,
        v_snapshot_id,
        v_logical_name,
        v_host_device
    );
END;
$procedure$;

-- UpdateVmDevice: rewrites a device.
CREATE OR REPLACE FUNCTION UpdateVmDevice(
    v_device_id UUID,
    v_vm_id UUID,
    v_device VARCHAR(255),
    v_type VARCHAR(30),
    v_address VARCHAR(255),
    v_spec_params TEXT,
    v_is_managed BOOLEAN,
    v_is_plugged BOOLEAN,
    v_is_readonly BOOLEAN,
    v_alias VARCHAR(255),
    v_custom_properties TEXT,
    v_snapshot_id UUID,
    v_logical_name VARCHAR(255),
    v_host_device VARCHAR(255)
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.vm_device
    SET
        device = v_device,
        type = v_type,
        address = v_address,
        spec_params = v_spec_params,
        is_managed = v_is_managed,
        is_plugged = v_is_plugged,
        is_readonly = v_is_readonly,
        alias = v_alias,
        custom_properties = v_custom_properties,
        snapshot_id = v_snapshot_id,
        logical_name = v_logical_name,
        host_device = v_host_device,
        _update_date = LOCALTIMESTAMP
    WHERE device_id = v_device_id
        AND vm_id = v_vm_id;
END;
$procedure$;

-- DeleteVmDevice: removes a device from a VM (NULL vm: from every VM).
CREATE OR REPLACE FUNCTION DeleteVmDevice(
    v_device_id UUID,
    v_vm_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.vm_device
    WHERE device_id = v_device_id
        AND (v_vm_id IS NULL OR vm_id = v_vm_id);
END;
$procedure$;

-- GetVmDeviceRowByDeviceId: a device (NULL vm: on every VM).
CREATE OR REPLACE FUNCTION GetVmDeviceRowByDeviceId(
    v_device_id UUID,
    v_vm_id UUID
)
RETURNS SETOF VM_DEVICE
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.vm_device
    WHERE device_id = v_device_id
        AND (v_vm_id IS NULL OR vm_id = v_vm_id);
END;
$procedure$;

-- GetVmDeviceRowsByVmId: the devices of a VM.
CREATE OR REPLACE FUNCTION GetVmDeviceRowsByVmId(
    v_vm_id UUID,
    v_user_id UUID,
    v_is_filtered BOOLEAN
)
RETURNS SETOF VM_DEVICE
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.vm_device
    WHERE vm_id = v_vm_id
        AND v_is_filtered IS NOT TRUE
    ORDER BY type, device, device_id;
END;
$procedure$;

-- GetAllVmDeviceRows: every device.
CREATE OR REPLACE FUNCTION GetAllVmDeviceRows()
RETURNS SETOF VM_DEVICE
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.vm_device;
END;
$procedure$;
