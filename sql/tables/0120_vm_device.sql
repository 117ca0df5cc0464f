-- vm_device: devices of VMs and templates; a disk attachment is a row with type 'disk'.
CREATE TABLE vm_device (
    device_id UUID NOT NULL,
    vm_id UUID NOT NULL,
    type VARCHAR(30) NOT NULL,
    device VARCHAR(255) NOT NULL,
    address VARCHAR(255) NOT NULL,
    spec_params TEXT,
    is_managed BOOLEAN NOT NULL DEFAULT FALSE,
    is_plugged BOOLEAN NOT NULL DEFAULT FALSE,
    is_readonly BOOLEAN NOT NULL DEFAULT FALSE,
    _create_date TIMESTAMP WITH TIME ZONE DEFAULT now(),
    _update_date TIMESTAMP WITH TIME ZONE,
    alias VARCHAR(255) NOT NULL DEFAULT '',
    custom_properties TEXT,
    snapshot_id UUID,
    logical_name VARCHAR(255),
    host_device VARCHAR(255),
    CONSTRAINT pk_vm_device PRIMARY KEY (device_id, vm_id),
    CONSTRAINT fk_vm_device_vm_static FOREIGN KEY (vm_id) REFERENCES vm_static (vm_guid) ON DELETE CASCADE
);

CREATE INDEX idx_vm_device_vm_id ON vm_device (vm_id);
CREATE INDEX idx_vm_device_snapshot_id ON vm_device (snapshot_id);
CREATE INDEX idx_vm_device_is_plugged ON vm_device (is_plugged);
CREATE INDEX idx_vm_device_alias_type_device ON vm_device (alias, type, device);

COMMENT ON TABLE vm_device IS
'Devices of VMs and templates; for a disk, device_id is the disk id (images.image_group_id).';
COMMENT ON COLUMN vm_device.device_id IS 'The device id; for a disk, its base_disks.disk_id.';
COMMENT ON COLUMN vm_device.vm_id IS 'The VM or template owning the device.';
COMMENT ON COLUMN vm_device.type IS 'Device type (disk, interface, video, ...).';
COMMENT ON COLUMN vm_device.device IS 'Device kind within the type (disk, cdrom, ...).';
COMMENT ON COLUMN vm_device.snapshot_id IS
'The VM snapshot the attachment belongs to (snapshots are outside this schema: no foreign key).';
