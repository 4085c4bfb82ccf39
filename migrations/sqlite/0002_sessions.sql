-- Investigation sessions and what they produced, so a restart loses nothing.
-- Portable SQL: the PostgreSQL twin uses the same names and types (TEXT JSON,
-- RFC 3339 TEXT timestamps with a fixed width so they compare as text).

-- One row per thread (chat) or investigation (API). `messages` is the model
-- conversation as JSON, rewritten after every question; evidence is append-only
-- in its own table.
CREATE TABLE sessions (
    id               TEXT    PRIMARY KEY,
    principal        TEXT    NOT NULL,
    -- JSON array: the squads of whoever created it; readers must hold all of them.
    squads           TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    -- 'idle' | 'running' | 'interrupted'
    status           TEXT    NOT NULL,
    -- The question being answered while status is running or interrupted.
    pending_question TEXT,
    messages         TEXT    NOT NULL,
    -- A row lease serialises questions in one session, across replicas too:
    -- taken by one conditional UPDATE, it expires if its holder dies.
    lease_holder     TEXT,
    lease_until      TEXT
);

CREATE INDEX sessions_updated ON sessions (updated_at);

CREATE TABLE evidence (
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id          TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    -- The whole item as JSON (content kept in full).
    item        TEXT    NOT NULL,
    PRIMARY KEY (session_id, id)
);

-- One row per answered question.
CREATE TABLE reports (
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    question    TEXT    NOT NULL,
    report      TEXT    NOT NULL,
    usage       TEXT    NOT NULL,
    cost_usd    REAL    NOT NULL,
    turns       INTEGER NOT NULL,
    tool_calls  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    -- JSON array of the evidence ids this question added.
    new_evidence TEXT   NOT NULL,
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (session_id, seq)
);

-- Tokens and cost per squad per UTC day.
CREATE TABLE usage_daily (
    squad          TEXT    NOT NULL,
    day            TEXT    NOT NULL,
    investigations INTEGER NOT NULL,
    input_tokens   INTEGER NOT NULL,
    output_tokens  INTEGER NOT NULL,
    cost_usd       REAL    NOT NULL,
    PRIMARY KEY (squad, day)
);

-- Chat event ids already handled, so a transport's retry is answered once.
CREATE TABLE processed_events (
    event_id    TEXT    PRIMARY KEY,
    received_at TEXT    NOT NULL
);

CREATE TABLE feedback (
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    principal   TEXT    NOT NULL,
    rating      INTEGER NOT NULL,
    comment     TEXT,
    created_at  TEXT    NOT NULL
);
