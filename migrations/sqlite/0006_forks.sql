-- eventmem schema 6 for SQLite: forks.
-- A fork's first event (kind `fork`) is at the position after its fork point: the
-- positions before it are its parent's events, read from the parent (nothing is copied).
-- The gapless rule lets that one event begin a session past position 1; every other
-- event still comes right after the session's last. The events, and every hash, are
-- untouched.

DROP TRIGGER events_positions_are_gapless;

CREATE TRIGGER events_positions_are_gapless BEFORE INSERT ON events
WHEN NEW.position <> 1 + coalesce(
    (SELECT max(position) FROM events WHERE session_id = NEW.session_id), 0)
    AND NOT (NEW.kind = 'fork'
             AND NOT EXISTS (SELECT 1 FROM events WHERE session_id = NEW.session_id))
BEGIN
    SELECT RAISE(ABORT, 'eventmem: event positions must be gapless');
END;
