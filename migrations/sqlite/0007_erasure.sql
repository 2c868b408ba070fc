-- eventmem schema 7 for SQLite: erasure that keeps the chain verifiable.
-- Each new event stores the SHA-256 of its content (`digest`), and its chain hash covers
-- that digest instead of the content itself (see eventmem/events.py: event_hash), so the
-- content can be erased while every hash still verifies. Events written before keep no
-- digest and the first chain (chain_hash); their hashes are untouched.
-- An erasure appends a tombstone (kind `erase`), then replaces the content of each
-- earlier event of the session by '{"kind":"erased"}': the one change to an event the
-- immutability trigger lets through, and only with every other column unchanged. A seal
-- (kind `seal`, retention) does the same for the events before its `before` position.
-- The session head remembers the position of its tombstone (`erased`, 0: none).

ALTER TABLE events ADD COLUMN digest BLOB CHECK (digest IS NULL OR length(digest) = 32);

ALTER TABLE sessions ADD COLUMN erased INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER events_are_immutable_update;

CREATE TRIGGER events_are_immutable_update BEFORE UPDATE ON events
WHEN NOT (
    NEW.data = '{"kind":"erased"}' AND OLD.data <> NEW.data
    AND NEW.id = OLD.id AND NEW.session_id = OLD.session_id
    AND NEW.position = OLD.position AND NEW.kind = OLD.kind
    AND NEW.recorded_at = OLD.recorded_at AND NEW.hash = OLD.hash
    AND NEW.digest IS OLD.digest
    AND EXISTS (SELECT 1 FROM events AS t WHERE t.session_id = OLD.session_id
                AND t.position > OLD.position
                AND (t.kind = 'erase'
                     OR (t.kind = 'seal' AND OLD.position < json_extract(t.data, '$.before'))))
)
BEGIN
    SELECT RAISE(ABORT, 'eventmem: events are immutable (UPDATE refused)');
END;
