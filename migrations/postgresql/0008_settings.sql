-- eventmem schema 8 for PostgreSQL: settings that hold for the whole store
-- (as migrations/sqlite/0008_settings.sql).
-- `encryption` is set once a store was opened with a key store (eventmem.encryption):
-- from then on it is opened only with one, so a process that forgot its keys cannot
-- write a session's content in the clear beside its encrypted events.

CREATE TABLE eventmem_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Every open reads this table. Roles that could read the log before this schema (a
-- reader or a writer granted SELECT on its tables, docs/postgres.md) may read it too,
-- so that upgrading a store does not lock them out.
DO $$
DECLARE
    grantee_name text;
BEGIN
    FOR grantee_name IN
        SELECT DISTINCT grantee FROM information_schema.role_table_grants
        WHERE table_schema = current_schema() AND table_name = 'events'
        AND privilege_type = 'SELECT' AND grantee <> current_user
    LOOP
        IF grantee_name = 'PUBLIC' THEN
            GRANT SELECT ON eventmem_settings TO PUBLIC;
        ELSE
            EXECUTE format('GRANT SELECT ON eventmem_settings TO %I', grantee_name);
        END IF;
    END LOOP;
END $$;
