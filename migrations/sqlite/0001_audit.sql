-- Append-only, hash-chained audit log: one row per query / tool call.
-- The hash format is defined in src/store/audit.rs (canonical_v1); every column
-- except `hash` itself is covered by the hash, so keep the two in step.
-- Column names avoid keywords (AT, ROWS) so the PostgreSQL twin can match.
CREATE TABLE audit_log (
    -- 1, 2, 3, ... assigned by append_audit; a gap means a deleted row.
    seq          INTEGER PRIMARY KEY,
    -- RFC 3339 UTC, microsecond precision, 'Z' suffix; hashed as stored.
    occurred_at  TEXT    NOT NULL,
    principal    TEXT    NOT NULL,
    channel      TEXT,
    squad        TEXT,
    source       TEXT    NOT NULL,
    tool         TEXT    NOT NULL,
    statement    TEXT    NOT NULL,
    -- 'allowed' | 'refused' | 'failed'. No CHECK: adding a verdict later
    -- would need a table rebuild on SQLite; the reader rejects unknown values.
    verdict      TEXT    NOT NULL,
    reason       TEXT,
    row_count    INTEGER,
    duration_ms  INTEGER,
    evidence_id  TEXT,
    session_id   TEXT,
    -- Which canonical form `hash` was computed with, so the form can evolve.
    hash_version INTEGER NOT NULL,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL
);

-- `audit tail --principal/--source` without scanning the whole log.
CREATE INDEX audit_log_principal ON audit_log (principal, seq);
CREATE INDEX audit_log_source ON audit_log (source, seq);

-- Guard against the bot itself (or a careless maintenance query) rewriting
-- history. Someone with raw file access can drop these; the hash chain is what
-- detects that.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
