-- audit_log: the events shown to users.
CREATE SEQUENCE audit_log_seq;

CREATE TABLE audit_log (
    audit_log_id BIGINT NOT NULL DEFAULT nextval('audit_log_seq'),
    user_id UUID,
    user_name VARCHAR(255) NOT NULL DEFAULT '',
    vm_id UUID,
    vm_name VARCHAR(255) NOT NULL DEFAULT '',
    vm_template_id UUID,
    vm_template_name VARCHAR(255) NOT NULL DEFAULT '',
    vds_id UUID,
    vds_name VARCHAR(255) NOT NULL DEFAULT '',
    log_time TIMESTAMP WITH TIME ZONE NOT NULL,
    log_type_name VARCHAR(100) DEFAULT '',
    log_type INTEGER NOT NULL,
    severity INTEGER NOT NULL,
    message TEXT NOT NULL,
    processed BOOLEAN NOT NULL DEFAULT FALSE,
    storage_pool_id UUID,
    storage_pool_name VARCHAR(40) NOT NULL DEFAULT '',
    storage_domain_id UUID,
    storage_domain_name VARCHAR(250) NOT NULL DEFAULT '',
    cluster_id UUID,
    cluster_name VARCHAR(255) NOT NULL DEFAULT '',
    correlation_id VARCHAR(50),
    job_id UUID,
    quota_id UUID,
    quota_name VARCHAR(60) NOT NULL DEFAULT '',
    gluster_volume_id UUID,
    gluster_volume_name VARCHAR(1000) NOT NULL DEFAULT '',
    origin VARCHAR(255) DEFAULT 'oVirt',
    custom_event_id INTEGER DEFAULT -1,
    event_flood_in_sec INTEGER DEFAULT 30,
    custom_data TEXT DEFAULT '',
    deleted BOOLEAN DEFAULT FALSE,
    call_stack TEXT DEFAULT '',
    brick_id UUID,
    brick_path TEXT DEFAULT '',
    custom_id VARCHAR(255),
    CONSTRAINT pk_audit_log PRIMARY KEY (audit_log_id)
);

ALTER SEQUENCE audit_log_seq OWNED BY audit_log.audit_log_id;

CREATE INDEX idx_audit_log_log_time ON audit_log (log_time);
CREATE INDEX idx_audit_correlation_id ON audit_log (correlation_id);
CREATE INDEX idx_audit_log_job_id ON audit_log (job_id);
CREATE INDEX idx_audit_log_severity ON audit_log (severity);
CREATE INDEX idx_audit_log_type_name ON audit_log (log_type, log_type_name);
CREATE UNIQUE INDEX audit_log_origin_custom_event_id_idx ON audit_log (origin, custom_event_id)
WHERE origin::TEXT NOT ILIKE 'ovirt';

COMMENT ON TABLE audit_log IS 'Events: what happened to which VM, disk, domain or data center, and when.';
COMMENT ON COLUMN audit_log.audit_log_id IS 'The event id (audit_log_seq).';
COMMENT ON COLUMN audit_log.log_time IS 'When the event happened.';
COMMENT ON COLUMN audit_log.log_type IS 'oVirt AuditLogType value.';
COMMENT ON COLUMN audit_log.severity IS 'oVirt AuditLogSeverity: NORMAL=0, WARNING=1, ERROR=2, ALERT=10.';
COMMENT ON COLUMN audit_log.message IS 'The event text.';
COMMENT ON COLUMN audit_log.correlation_id IS 'Ties the event to the command flow that caused it.';
