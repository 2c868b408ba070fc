-- eventmem schema 3: general messages.
-- A general append (`messages` event) may pin the system message that begins a view:
-- pruning passes it, and it stays visible below the watermark. The head remembers its
-- seq (-1: none); every session written before has none.

ALTER TABLE sessions ADD COLUMN pinned INTEGER NOT NULL DEFAULT -1;

-- Schema 2 added turn_position with 0 for every session it found; the fold gives the
-- position of the session's last turn. Sessions written under schema 1 are set right
-- here, so verify finds their heads equal to the fold (it is a no-op for the others).
UPDATE sessions SET turn_position = coalesce(
    (SELECT max(e.position) FROM events AS e
     WHERE e.session_id = sessions.session_id AND e.kind = 'turn'),
    0
);
