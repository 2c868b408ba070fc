-- eventmem schema 2: agent intermediate steps.
-- Steps are `step` events; until their turn is saved they are pending. The session head
-- remembers where its last turn ended and how many steps wait after it, so a save reads
-- only this turn's step events, never the history.

ALTER TABLE sessions ADD COLUMN turn_position INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN pending_steps INTEGER NOT NULL DEFAULT 0;
