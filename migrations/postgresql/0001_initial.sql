-- eventmem schema 1 for PostgreSQL: the append-only event log and the buffer projection.
-- The same tables, columns and rules as migrations/sqlite/0001_initial.sql. Applied by
-- eventmem/store/pg_schema.py in the store's schema (the search_path), inside one
-- transaction with its bookkeeping row.

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
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id  TEXT   NOT NULL CHECK (length(session_id) > 0),
    position    BIGINT NOT NULL CHECK (position >= 1),
    kind        TEXT   NOT NULL,
    recorded_at BIGINT NOT NULL,  -- microseconds since the Unix epoch, UTC
    data        TEXT   NOT NULL,
    hash        BYTEA  NOT NULL CHECK (length(hash) = 32),
    UNIQUE (session_id, position)
);

-- The trigger functions resolve `events` in the store's schema whatever the caller's
-- search_path is (SET search_path FROM CURRENT).
CREATE FUNCTION eventmem_refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'eventmem: events are immutable (% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER events_are_immutable BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION eventmem_refuse_change();

CREATE TRIGGER events_are_never_truncated BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION eventmem_refuse_change();

CREATE FUNCTION eventmem_check_gapless() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.position <> 1 + coalesce(
        (SELECT max(position) FROM events WHERE session_id = NEW.session_id), 0) THEN
        RAISE EXCEPTION 'eventmem: event positions must be gapless'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER events_positions_are_gapless BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION eventmem_check_gapless();

-- The projection's head per session: where the log ends and where the buffer starts.
-- Visible messages are those with watermark <= seq < next_seq.
CREATE TABLE sessions (
    session_id   TEXT   PRIMARY KEY,
    version      BIGINT NOT NULL,  -- position of the last event
    head_hash    BYTEA  NOT NULL,  -- hash of the last event
    next_seq     BIGINT NOT NULL,
    watermark    BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,  -- sum of the visible messages' counts
    overhead     BIGINT NOT NULL,  -- count of an empty buffer under `counter`
    counter      TEXT,             -- counting scheme of the visible counts
    created_at   BIGINT NOT NULL
);

-- The visible messages themselves, so a load reads O(buffer) rows, never the history.
CREATE TABLE view_messages (
    session_id TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    tokens     BIGINT NOT NULL,
    message    TEXT   NOT NULL,
    PRIMARY KEY (session_id, seq)
);
