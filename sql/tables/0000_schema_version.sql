-- schema_version: one row per upgrade script applied to this database (oVirt's layout).
CREATE SEQUENCE schema_version_seq;

CREATE TABLE schema_version (
    id INTEGER NOT NULL DEFAULT nextval('schema_version_seq'::REGCLASS),
    version VARCHAR(10) NOT NULL,
    script VARCHAR(255) NOT NULL,
    checksum VARCHAR(128),
    installed_by VARCHAR(63) NOT NULL,
    started_at TIMESTAMP WITHOUT TIME ZONE DEFAULT now(),
    ended_at TIMESTAMP WITHOUT TIME ZONE,
    state VARCHAR(15) NOT NULL,
    current BOOLEAN NOT NULL,
    comment TEXT DEFAULT '',
    CONSTRAINT schema_version_pkey PRIMARY KEY (id),
    CONSTRAINT schema_version_script_key UNIQUE (script)
);

ALTER SEQUENCE schema_version_seq OWNED BY schema_version.id;

COMMENT ON TABLE schema_version IS
'Upgrade scripts applied to this database, each with the checksum of the file that ran.';
COMMENT ON COLUMN schema_version.version IS
'The script number (NNNN of sql/upgrade/NNNN_name.sql).';
COMMENT ON COLUMN schema_version.script IS
'The script path relative to sql/.';
COMMENT ON COLUMN schema_version.checksum IS
'SHA-256 of the script text; deploy refuses to run when the file no longer matches.';
COMMENT ON COLUMN schema_version.state IS
'INSTALLED once the script ran (or was part of the fresh install).';
COMMENT ON COLUMN schema_version.current IS
'True on the row of the newest script applied.';
COMMENT ON COLUMN schema_version.id IS
'Order in which the scripts were recorded.';
