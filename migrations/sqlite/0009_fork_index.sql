-- eventmem schema 9 for SQLite: the fork events, found without reading the log.
-- An erasure, and each session a retention policy seals, first looks for the session's
-- forks (they hold its history); without an index that was a scan of every event.
-- Fork events are few, so the index is small.

CREATE INDEX events_forks ON events (id) WHERE kind = 'fork';
