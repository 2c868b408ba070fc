-- eventmem schema 9 for PostgreSQL: the fork events, found without reading the log
-- (as migrations/sqlite/0009_fork_index.sql).
-- An erasure, and each session a retention policy seals, first looks for the session's
-- forks (they hold its history); without an index that was a scan of every event.
-- Fork events are few, so the index is small.

CREATE INDEX events_forks ON events (id) WHERE kind = 'fork';
