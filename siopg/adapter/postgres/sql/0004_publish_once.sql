-- siopg schema, version 4: idempotent publishing (a batch retried after an unknown outcome
-- is written once).
--
-- When a publish commits but its reply is lost (Postgres crash, partition, connection cut
-- after COMMIT), the sender cannot tell whether the batch landed. Each batch therefore
-- carries a random key, stored on its first row in the same transaction. A retry sends the
-- same rows with the same key: under the log's ordering lock the function first looks the
-- key up and, if that batch committed, returns its ids instead of inserting it again.
-- The key lives as long as its packet (pruned with it), i.e. for the retention window.
-- Touches only its own objects: the column, its index and the function.

ALTER TABLE @schema@.packets ADD COLUMN IF NOT EXISTS batch_key uuid;

-- One entry per batch (only first rows carry a key).
CREATE UNIQUE INDEX IF NOT EXISTS packets_batch_key_idx
    ON @schema@.packets (batch_key) WHERE batch_key IS NOT NULL;

-- publish_batch with a batch key: same arrays, same ordering lock, same NOTIFY.
CREATE OR REPLACE FUNCTION @schema@.publish_batch_once(
    p_key uuid,
    p_kind smallint[], p_uid text, p_nsp text[], p_rooms text[], p_except text[],
    p_recoverable boolean[], p_target text[], p_payload bytea[], p_payload_json jsonb[]
) RETURNS bigint[]
LANGUAGE plpgsql AS $fn$
DECLARE
    ids bigint[];
    first_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1936289639, hashtext(@schema_literal@));
    -- A fresh snapshot after the lock: a first attempt that committed (or was still running
    -- and has committed while we waited for the lock) is visible here.
    SELECT id INTO first_id FROM @schema@.packets WHERE batch_key = p_key;
    IF FOUND THEN
        -- nothing else inserts while the lock is held: the batch is the next rows of p_uid
        RETURN ARRAY(SELECT id FROM @schema@.packets WHERE id >= first_id AND uid = p_uid
                     ORDER BY id LIMIT cardinality(p_kind));
    END IF;
    WITH ins AS (
        INSERT INTO @schema@.packets
            (kind, uid, nsp, rooms, except_rooms, recoverable, target, payload, payload_json, batch_key)
        SELECT t.kind, p_uid, t.nsp,
               CASE WHEN t.rooms = '[]' THEN '{}'::text[]
                    ELSE ARRAY(SELECT jsonb_array_elements_text(t.rooms::jsonb)) END,
               CASE WHEN t.except_rooms = '[]' THEN '{}'::text[]
                    ELSE ARRAY(SELECT jsonb_array_elements_text(t.except_rooms::jsonb)) END,
               t.recoverable, t.target, t.payload, t.payload_json,
               CASE WHEN t.ord = 1 THEN p_key END
        FROM unnest(p_kind, p_nsp, p_rooms, p_except, p_recoverable, p_target, p_payload,
                    p_payload_json)
             WITH ORDINALITY AS t(kind, nsp, rooms, except_rooms, recoverable, target,
                                  payload, payload_json, ord)
        ORDER BY t.ord
        RETURNING id
    )
    SELECT array_agg(id ORDER BY id) INTO ids FROM ins;
    IF ids IS NOT NULL THEN
        PERFORM pg_notify('siopg#' || @schema_literal@, ids[array_length(ids, 1)]::text);
    END IF;
    RETURN ids;
END
$fn$;
