-- eventmem schema 1: the append-only event log and the buffer projection.
-- Applied by eventmem/store/migrate.py inside one transaction with its bookkeeping row.
-- migrations/postgresql/0001_initial.sql is the same schema for PostgreSQL.

PRAGMA application_id = 1163283789;  -- 0x4556_4D4D, "EVMM": marks the file as eventmem's

-- One row per applied migration (the bookkeeping row is inserted by the migrator).
CREATE TABLE eventmem_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL
);

-- The log. `id` is the global order across sessions; `position` is 1-based and gapless
-- per session. `data` is the event's canonical JSON; `hash` chains it to the session's
-- previous event (see eventmem/events.py: chain_hash).
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT    NOT NULL CHECK (length(session_id) > 0),
    position    INTEGER NOT NULL CHECK (position >= 1),
    kind        TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,  -- microseconds since the Unix epoch, UTC
    data        TEXT    NOT NULL,
    hash        BLOB    NOT NULL CHECK (length(hash) = 32),
    UNIQUE (session_id, position)
);

CREATE TRIGGER events_are_immutable_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'eventmem: events are immutable (UPDATE refused)');
END;

CREATE TRIGGER events_are_immutable_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'eventmem: events are immutable (DELETE refused)');
END;

CREATE TRIGGER events_positions_are_gapless BEFORE INSERT ON events
WHEN NEW.position <> 1 + coalesce(
    (SELECT max(position) FROM events WHERE session_id = NEW.session_id), 0)
BEGIN
    SELECT RAISE(ABORT, 'eventmem: event positions must be gapless');
END;

-- The projection's head per session: where the log ends and where the buffer starts.
-- Visible messages are those with watermark <= seq < next_seq.
CREATE TABLE sessions (
    session_id   TEXT    PRIMARY KEY,
    version      INTEGER NOT NULL,  -- position of the last event
    head_hash    BLOB    NOT NULL,  -- hash of the last event
    next_seq     INTEGER NOT NULL,
    watermark    INTEGER NOT NULL,
    total_tokens INTEGER NOT NULL,  -- sum of the visible messages' counts
    overhead     INTEGER NOT NULL,  -- count of an empty buffer under `counter`
    counter      TEXT,              -- counting scheme of the visible counts
    created_at   INTEGER NOT NULL
);

-- The visible messages themselves, so a load reads O(buffer) rows, never the history.
CREATE TABLE view_messages (
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    tokens     INTEGER NOT NULL,
    message    TEXT    NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
