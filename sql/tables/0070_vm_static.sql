-- vm_static: VMs and templates (the key columns a disk move needs).
CREATE TABLE vm_static (
    vm_guid UUID NOT NULL,
    vm_name VARCHAR(255) NOT NULL,
    mem_size_mb INTEGER NOT NULL DEFAULT 1024,
    vmt_guid UUID NOT NULL,
    os INTEGER NOT NULL DEFAULT 0,
    description VARCHAR(4000) NOT NULL DEFAULT '',
    cluster_id UUID,
    creation_date TIMESTAMP WITH TIME ZONE,
    _create_date TIMESTAMP WITH TIME ZONE DEFAULT localtimestamp,
    _update_date TIMESTAMP WITH TIME ZONE,
    entity_type VARCHAR(32) NOT NULL,
    template_status INTEGER,
    quota_id UUID,
    free_text_comment TEXT NOT NULL DEFAULT '',
    template_version_number INTEGER,
    template_version_name VARCHAR(40) DEFAULT NULL,
    CONSTRAINT pk_vm_static PRIMARY KEY (vm_guid),
    CONSTRAINT vm_templates_vm_static FOREIGN KEY (vmt_guid) REFERENCES vm_static (vm_guid),
    CONSTRAINT fk_vm_static_quota FOREIGN KEY (quota_id) REFERENCES quota (id) ON DELETE SET NULL
);

CREATE INDEX idx_vm_static_vm_name ON vm_static (vm_name);
CREATE INDEX idx_vm_static_vmt_guid ON vm_static (vmt_guid);
CREATE INDEX idx_vm_static_quota_id ON vm_static (quota_id);
CREATE INDEX idx_vm_static_cluster_id ON vm_static (cluster_id);

-- oVirt's Blank template: every VM created without a template refers to it.
INSERT INTO vm_static (
    vm_guid, vm_name, mem_size_mb, vmt_guid, os, description, creation_date,
    entity_type, template_status, template_version_number
)
VALUES (
    '00000000-0000-0000-0000-000000000000', 'Blank', 1024,
    '00000000-0000-0000-0000-000000000000', 0, 'Blank template',
    '2008-04-01 00:00:00+00', 'TEMPLATE', 0, 1
);

COMMENT ON TABLE vm_static IS
'VMs and templates (entity_type VM, TEMPLATE, INSTANCE_TYPE, IMAGE_TYPE): only the columns disk moves use.';
COMMENT ON COLUMN vm_static.vm_guid IS 'The VM or template id.';
COMMENT ON COLUMN vm_static.vm_name IS 'The VM or template name.';
COMMENT ON COLUMN vm_static.vmt_guid IS
'The template a VM is based on (the Blank template 00000000-... when none); a template''s own id.';
COMMENT ON COLUMN vm_static.entity_type IS 'VM, TEMPLATE, INSTANCE_TYPE or IMAGE_TYPE.';
COMMENT ON COLUMN vm_static.template_status IS
'Templates only, oVirt VmTemplateStatus: OK=0, Locked=1, Illegal=2.';
COMMENT ON COLUMN vm_static.cluster_id IS 'The cluster (clusters are outside this schema: no foreign key).';
COMMENT ON COLUMN vm_static.quota_id IS 'The VM''s quota.';
