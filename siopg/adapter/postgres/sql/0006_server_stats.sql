-- siopg schema, version 6: each server's stats snapshot, beside its heartbeat (the dashboard).
--
-- A server's liveness row in `nodes` (namespace '') carries a compact JSON document of
-- aggregates (sockets by transport and namespace, rooms, counters, a few minutes of history
-- points), rewritten every couple of seconds by the server itself. Any process that reads
-- the schema (another worker, `siopg dashboard --database-url`) sees the whole cluster.
-- Pruned with the row (dead servers). Touches only its own columns.
ALTER TABLE @schema@.nodes ADD COLUMN IF NOT EXISTS stats jsonb;
ALTER TABLE @schema@.nodes ADD COLUMN IF NOT EXISTS stats_at timestamptz;
