-- PostgreSQL twin of migrations/sqlite/0001_audit.sql: same names, same
-- meaning, so the hash (src/store/audit.rs, canonical_v1) is computed from the
-- same values on either backend. Keep the two files in step.
CREATE TABLE audit_log (
    -- 1, 2, 3, ... assigned by append_audit under a table lock (not a
    -- sequence: the hash covers seq, so it must be known before the insert,
    -- and a sequence would leave gaps on rollback).
    seq          BIGINT  PRIMARY KEY,
    -- RFC 3339 UTC text exactly as hashed. COLLATE "C": byte order, so
    -- comparisons never depend on the server's locale.
    occurred_at  TEXT    COLLATE "C" NOT NULL,
    principal    TEXT    NOT NULL,
    channel      TEXT,
    squad        TEXT,
    source       TEXT    NOT NULL,
    tool         TEXT    NOT NULL,
    statement    TEXT    NOT NULL,
    -- 'allowed' | 'refused' | 'failed'; the reader rejects unknown values.
    verdict      TEXT    NOT NULL,
    reason       TEXT,
    row_count    BIGINT,
    duration_ms  BIGINT,
    evidence_id  TEXT,
    session_id   TEXT,
    hash_version BIGINT  NOT NULL,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL
);

CREATE INDEX audit_log_principal ON audit_log (principal, seq);
CREATE INDEX audit_log_source ON audit_log (source, seq);

-- Append-only against the bot itself and careless maintenance; a superuser
-- can drop these, and the hash chain is what detects that.
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Row triggers do not fire on TRUNCATE; PostgreSQL has a statement trigger.
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
