-- PostgreSQL twin of migrations/sqlite/0002_sessions.sql: same names, 64-bit
-- integers, DOUBLE PRECISION for REAL, TEXT JSON. Timestamps stay fixed-width
-- RFC 3339 TEXT with COLLATE "C" so they compare as bytes, like on SQLite,
-- whatever the server's locale.

CREATE TABLE sessions (
    id               TEXT    PRIMARY KEY,
    principal        TEXT    NOT NULL,
    squads           TEXT    NOT NULL,
    created_at       TEXT    COLLATE "C" NOT NULL,
    updated_at       TEXT    COLLATE "C" NOT NULL,
    -- 'idle' | 'running' | 'interrupted'
    status           TEXT    NOT NULL,
    pending_question TEXT,
    messages         TEXT    NOT NULL,
    -- The row lease: one conditional UPDATE takes it, so replicas sharing
    -- this database serialise questions in one session.
    lease_holder     TEXT,
    lease_until      TEXT    COLLATE "C"
);

CREATE INDEX sessions_updated ON sessions (updated_at);

CREATE TABLE evidence (
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id          TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    source      TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    created_at  TEXT    COLLATE "C" NOT NULL,
    item        TEXT    NOT NULL,
    PRIMARY KEY (session_id, id)
);

CREATE TABLE reports (
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq         BIGINT  NOT NULL,
    question    TEXT    NOT NULL,
    report      TEXT    NOT NULL,
    usage       TEXT    NOT NULL,
    cost_usd    DOUBLE PRECISION NOT NULL,
    turns       BIGINT  NOT NULL,
    tool_calls  BIGINT  NOT NULL,
    duration_ms BIGINT  NOT NULL,
    new_evidence TEXT   NOT NULL,
    created_at  TEXT    COLLATE "C" NOT NULL,
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE usage_daily (
    squad          TEXT    NOT NULL,
    day            TEXT    COLLATE "C" NOT NULL,
    investigations BIGINT  NOT NULL,
    input_tokens   BIGINT  NOT NULL,
    output_tokens  BIGINT  NOT NULL,
    cost_usd       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (squad, day)
);

CREATE TABLE processed_events (
    event_id    TEXT    PRIMARY KEY,
    received_at TEXT    COLLATE "C" NOT NULL
);

CREATE TABLE feedback (
    -- SQLite's implicit rowid, made explicit.
    id          BIGSERIAL PRIMARY KEY,
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    principal   TEXT    NOT NULL,
    rating      BIGINT  NOT NULL,
    comment     TEXT,
    created_at  TEXT    COLLATE "C" NOT NULL
);
CREATE INDEX feedback_session ON feedback (session_id);
