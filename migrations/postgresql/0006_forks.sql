-- eventmem schema 6 for PostgreSQL: forks (as migrations/sqlite/0006_forks.sql).
-- A fork's first event (kind `fork`) is at the position after its fork point: the
-- positions before it are its parent's events, read from the parent (nothing is copied).
-- The gapless rule lets that one event begin a session past position 1; every other
-- event still comes right after the session's last. The events, and every hash, are
-- untouched.

DROP TRIGGER events_positions_are_gapless ON events;
DROP FUNCTION eventmem_check_gapless();

CREATE FUNCTION eventmem_check_gapless() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    last_position BIGINT;
BEGIN
    SELECT max(position) INTO last_position FROM events WHERE session_id = NEW.session_id;
    IF NEW.position <> 1 + coalesce(last_position, 0)
        AND NOT (NEW.kind = 'fork' AND last_position IS NULL) THEN
        RAISE EXCEPTION 'eventmem: event positions must be gapless'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER events_positions_are_gapless BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION eventmem_check_gapless();
