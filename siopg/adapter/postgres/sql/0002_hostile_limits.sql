-- siopg schema, version 2: node rows for namespaces of any length, reserved event names refused
-- by the SQL emit functions.
--
-- `nodes` was keyed by (uid, nsp): a btree entry cannot exceed ~2.7 kB, so a long dynamic
-- namespace name made the whole heartbeat insert fail. Key it by a hash of the name instead
-- (the name itself stays in the row, in full).
ALTER TABLE @schema@.nodes DROP CONSTRAINT IF EXISTS nodes_pkey;
CREATE UNIQUE INDEX IF NOT EXISTS nodes_uid_nsp_hash_key ON @schema@.nodes (uid, md5(nsp));

-- As in version 1, plus: reserved event names (what siopg.Emitter and the server refuse) are
-- refused here too, since a client would take them for its own lifecycle events.
CREATE OR REPLACE FUNCTION @schema@.emit_to(nsp text, rooms text[], except_rooms text[], args jsonb)
RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    new_id bigint;
BEGIN
    IF jsonb_typeof(args) IS DISTINCT FROM 'array' OR jsonb_array_length(args) = 0
       OR jsonb_typeof(args -> 0) <> 'string' THEN
        RAISE EXCEPTION 'siopg emit: args must be a JSON array starting with the event name'
            USING ERRCODE = '22023';
    END IF;
    IF (args ->> 0) IN ('connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener',
                        'removeListener') THEN
        RAISE EXCEPTION 'siopg emit: "%" is a reserved event name', args ->> 0
            USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(1936289639, hashtext(@schema_literal@));
    INSERT INTO @schema@.packets (kind, uid, nsp, rooms, except_rooms, recoverable, payload_json)
    VALUES (3, 'emitter', coalesce(nsp, '/'), coalesce(rooms, '{}'), coalesce(except_rooms, '{}'),
            true, args)
    RETURNING id INTO new_id;
    PERFORM pg_notify('siopg#' || @schema_literal@, new_id::text);
    RETURN new_id;
END
$fn$;
