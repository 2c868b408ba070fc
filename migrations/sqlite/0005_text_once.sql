-- eventmem schema 5 for SQLite: the buffer's text is stored once, in the log.
-- A buffer row now points at the event that holds its message (`messages[idx]` of the
-- session's event at `position`) instead of holding a copy: a save writes its text once
-- and a load reads the rows joined to their events. Rows written before this schema keep
-- their `message` (and no `position`) and are read as before; they go as the watermark
-- passes them, and rebuild writes every row in the new form. The events, and so every
-- hash, are untouched.

CREATE TABLE view_messages_5 (
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    tokens     INTEGER NOT NULL,
    position   INTEGER,  -- the session's event holding the message ...
    idx        INTEGER,  -- ... at this index of its messages
    message    TEXT,     -- or the message itself (a row from before schema 5)
    PRIMARY KEY (session_id, seq),
    CHECK ((position IS NULL) = (idx IS NULL) AND (position IS NULL) <> (message IS NULL))
) WITHOUT ROWID;

INSERT INTO view_messages_5 (session_id, seq, tokens, message)
SELECT session_id, seq, tokens, message FROM view_messages;

DROP TABLE view_messages;
ALTER TABLE view_messages_5 RENAME TO view_messages;
