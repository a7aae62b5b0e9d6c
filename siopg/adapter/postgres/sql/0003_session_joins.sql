-- siopg schema, version 3: per-room join offsets of sessions (replay only what a client could
-- have been sent, finding 5 of issue 7).
--
-- `joined` maps each room of the session to the log offset current when the socket joined it
-- ({"room": offset, ...}); the entry of the socket's own room (its sid) is the session start.
-- Recovery replays a room-targeted packet only if its id is above the join offset of one of
-- the session's target rooms, and never anything at or below the session start. NULL (rows
-- written before this version): no join filter.
ALTER TABLE @schema@.sessions ADD COLUMN IF NOT EXISTS joined jsonb;
