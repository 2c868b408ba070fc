-- eventmem schema 4 for SQLite: LangGraph checkpoints (eventmem.integrations.langgraph).
-- Checkpoint events live in the events table like every other event; these tables are
-- their lookup projection: which event holds each visible checkpoint, each stored
-- channel value and each pending write. Like sessions and view_messages they are
-- recomputed from the events by rebuild and checked against them by verify. (Named lg_*
-- so that a schema LangGraph's own PostgresSaver uses, with its checkpoints,
-- checkpoint_blobs and checkpoint_writes tables, can hold them too.)

CREATE TABLE lg_checkpoints (
    session_id    TEXT    NOT NULL,  -- the LangGraph thread
    ns            TEXT    NOT NULL,
    checkpoint_id TEXT    NOT NULL,
    position      INTEGER NOT NULL,  -- the event that put it
    parent_id     TEXT,
    run_id        TEXT,
    PRIMARY KEY (session_id, ns, checkpoint_id)
) WITHOUT ROWID;

CREATE INDEX lg_checkpoints_by_run ON lg_checkpoints (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE lg_values (
    session_id TEXT    NOT NULL,
    ns         TEXT    NOT NULL,
    channel    TEXT    NOT NULL,
    version    TEXT    NOT NULL,  -- the version's JSON
    position   INTEGER NOT NULL,  -- the checkpoint event that stores the value
    PRIMARY KEY (session_id, ns, channel, version)
) WITHOUT ROWID;

CREATE TABLE lg_writes (
    session_id    TEXT    NOT NULL,
    ns            TEXT    NOT NULL,
    checkpoint_id TEXT    NOT NULL,
    task_id       TEXT    NOT NULL,
    idx           INTEGER NOT NULL,
    position      INTEGER NOT NULL,  -- the writes event
    slot          INTEGER NOT NULL,  -- which of its writes
    PRIMARY KEY (session_id, ns, checkpoint_id, task_id, idx)
) WITHOUT ROWID;
