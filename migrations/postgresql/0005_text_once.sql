-- eventmem schema 5 for PostgreSQL: the buffer's text is stored once, in the log.
-- (as migrations/sqlite/0005_text_once.sql).
-- A buffer row now points at the event that holds its message (`messages[idx]` of the
-- session's event at `position`) instead of holding a copy: a save writes its text once
-- and a load reads the rows joined to their events. Rows written before this schema keep
-- their `message` (and no `position`) and are read as before; they go as the watermark
-- passes them, and rebuild writes every row in the new form. The events, and so every
-- hash, are untouched.

ALTER TABLE view_messages
    ALTER COLUMN message DROP NOT NULL,
    ADD COLUMN position BIGINT,
    ADD COLUMN idx      BIGINT,
    ADD CONSTRAINT view_messages_text_once
        CHECK ((position IS NULL) = (idx IS NULL) AND (position IS NULL) <> (message IS NULL));
