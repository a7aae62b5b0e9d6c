-- siopg schema, version 1: the packet log, CSR sessions, cluster nodes, and SQL emit functions.
--
-- `@schema@` is replaced by the migrator with the quoted schema name (default "siopg") and
-- `@schema_literal@` with the same name as a quoted SQL string. Apply with `siopg migrate`.

CREATE TABLE @schema@.packets (
    id           bigserial PRIMARY KEY,          -- the CSR offset; monotonic in COMMIT order
    kind         smallint    NOT NULL,           -- cluster message type (see siopg/adapter/cluster.py)
    uid          text        NOT NULL,           -- sending server id, or 'emitter'
    nsp          text        NOT NULL,
    rooms        text[]      NOT NULL DEFAULT '{}',
    except_rooms text[]      NOT NULL DEFAULT '{}',
    recoverable  boolean     NOT NULL DEFAULT false,  -- replayed by connection state recovery
    target       text,                           -- responses: the requesting server id
    payload      bytea,                          -- msgpack (from siopg processes)
    payload_json jsonb,                          -- event arguments as a JSON array (from SQL emit)
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Recovery scans one namespace after an offset.
CREATE INDEX packets_recovery_idx ON @schema@.packets (nsp, id) WHERE recoverable;

-- One row: everything with id <= pruned_through may be gone, so older offsets cannot recover.
CREATE TABLE @schema@.log_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pruned_through bigint  NOT NULL DEFAULT 0
);
INSERT INTO @schema@.log_state DEFAULT VALUES;

-- A session is written while its socket is connected (expires_at NULL: valid while its owner
-- server is alive, and for the recovery window after it dies, so a client recovers even after
-- a crash) and again when the socket disconnects (expires_at set).
CREATE TABLE @schema@.sessions (
    pid        text        PRIMARY KEY,          -- private session id
    sid        text        NOT NULL,
    nsp        text        NOT NULL,
    rooms      text[]      NOT NULL,
    data       bytea,                            -- msgpack of socket.data
    "offset"   bigint,
    owner      text,                             -- server holding the live socket
    expires_at timestamptz
);
CREATE INDEX sessions_expires_idx ON @schema@.sessions (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX sessions_owner_idx ON @schema@.sessions (owner) WHERE expires_at IS NULL;

-- One row per (server, namespace); server_count() counts fresh rows.
CREATE TABLE @schema@.nodes (
    uid        text        NOT NULL,
    nsp        text        NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (uid, nsp)
);

-- Appends rows to the log in commit order and wakes the listeners.
-- The transaction-level advisory lock is taken before ids are drawn and held until COMMIT,
-- so ids become visible in increasing order: a reader resuming at `id > last` never skips a
-- row that commits late. Arrays are parallel, one element per row; rooms are JSON arrays.
CREATE FUNCTION @schema@.publish_batch(
    p_kind smallint[], p_uid text, p_nsp text[], p_rooms text[], p_except text[],
    p_recoverable boolean[], p_target text[], p_payload bytea[], p_payload_json jsonb[]
) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    ids bigint[];
BEGIN
    PERFORM pg_advisory_xact_lock(1936289639, hashtext(@schema_literal@));
    WITH ins AS (
        INSERT INTO @schema@.packets
            (kind, uid, nsp, rooms, except_rooms, recoverable, target, payload, payload_json)
        SELECT t.kind, p_uid, t.nsp,
               CASE WHEN t.rooms = '[]' THEN '{}'::text[]
                    ELSE ARRAY(SELECT jsonb_array_elements_text(t.rooms::jsonb)) END,
               CASE WHEN t.except_rooms = '[]' THEN '{}'::text[]
                    ELSE ARRAY(SELECT jsonb_array_elements_text(t.except_rooms::jsonb)) END,
               t.recoverable, t.target, t.payload, t.payload_json
        FROM unnest(p_kind, p_nsp, p_rooms, p_except, p_recoverable, p_target, p_payload,
                    p_payload_json)
             WITH ORDINALITY AS t(kind, nsp, rooms, except_rooms, recoverable, target,
                                  payload, payload_json, ord)
        ORDER BY t.ord
        RETURNING id
    )
    SELECT array_agg(id ORDER BY id) INTO ids FROM ins;
    IF ids IS NOT NULL THEN
        -- The payload is only a wake-up hint (the newest id); readers fetch rows from the table.
        PERFORM pg_notify('siopg#' || @schema_literal@, ids[array_length(ids, 1)]::text);
    END IF;
    RETURN ids;
END
$fn$;

-- Emit an event from SQL (a trigger, a cron job, psql): it reaches the clients of every
-- siopg process and is replayed by connection state recovery like any other packet.
--   select siopg.emit_to('/', ARRAY['room1'], ARRAY['muted'], '["ev", 1, {"a": 2}]'::jsonb);
-- Empty `rooms` means every socket of the namespace. Returns the packet's offset.
-- Keep the calling transaction short: the log's ordering lock is held until it commits.
CREATE FUNCTION @schema@.emit_to(nsp text, rooms text[], except_rooms text[], args jsonb)
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
    PERFORM pg_advisory_xact_lock(1936289639, hashtext(@schema_literal@));
    INSERT INTO @schema@.packets (kind, uid, nsp, rooms, except_rooms, recoverable, payload_json)
    VALUES (3, 'emitter', coalesce(nsp, '/'), coalesce(rooms, '{}'), coalesce(except_rooms, '{}'),
            true, args)
    RETURNING id INTO new_id;
    PERFORM pg_notify('siopg#' || @schema_literal@, new_id::text);
    RETURN new_id;
END
$fn$;

-- The short form: select siopg.emit('/', 'room', 'ev', '{"a":1}'::jsonb);
-- `room` NULL means every socket of the namespace; `data` NULL sends the event with no argument.
CREATE FUNCTION @schema@.emit(nsp text, room text, event text, data jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE sql AS $fn$
    SELECT @schema@.emit_to(
        nsp,
        CASE WHEN room IS NULL THEN '{}'::text[] ELSE ARRAY[room] END,
        '{}'::text[],
        CASE WHEN data IS NULL THEN jsonb_build_array(event) ELSE jsonb_build_array(event, data) END);
$fn$;
