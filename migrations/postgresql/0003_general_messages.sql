-- eventmem schema 3 for PostgreSQL: general messages
-- (as migrations/sqlite/0003_general_messages.sql).
-- A general append (`messages` event) may pin the system message that begins a view:
-- pruning passes it, and it stays visible below the watermark. The head remembers its
-- seq (-1: none); every session written before has none.

ALTER TABLE sessions ADD COLUMN pinned BIGINT NOT NULL DEFAULT -1;
