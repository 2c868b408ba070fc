-- eventmem schema 8 for SQLite: settings that hold for the whole store.
-- `encryption` is set once a store was opened with a key store (eventmem.encryption):
-- from then on it is opened only with one, so a process that forgot its keys cannot
-- write a session's content in the clear beside its encrypted events.

CREATE TABLE eventmem_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
