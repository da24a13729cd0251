-- The write path at fleet scale: every cycle inserts one probe_history row and rewrites one
-- heartbeats and one server_status row per server (bench/bench_store.py measures it).

-- probe_history's foreign key was checked, and the server row share-locked, for every inserted
-- row: about a third of the cost of writing a cycle's history. History rows are only inserted
-- for servers joined in the same statement; when servers are deleted, a statement trigger
-- removes their history, as the ON DELETE CASCADE did.
ALTER TABLE probe_history DROP CONSTRAINT IF EXISTS probe_history_server_id_fkey;

CREATE FUNCTION heartbeat_delete_server_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    DELETE FROM public.probe_history ph USING deleted_servers d WHERE ph.server_id = d.id;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION heartbeat_delete_server_history() FROM PUBLIC;

CREATE TRIGGER servers_delete_history
    AFTER DELETE ON servers REFERENCING OLD TABLE AS deleted_servers
    FOR EACH STATEMENT EXECUTE FUNCTION heartbeat_delete_server_history();

-- Keyed by cycle first: a cycle's rows go in next to each other at the end of the key instead of
-- one into every server's corner of it, and a cycle's counts are a range of the key.
ALTER TABLE probe_history DROP CONSTRAINT probe_history_pkey, ADD PRIMARY KEY (cycle_id, server_id);

-- attempted_at only serves pruning by age and time-range reads over the whole fleet; rows
-- arrive in time order, so a BRIN index does that at a fraction of a B-tree's insert cost.
DROP INDEX IF EXISTS probe_history_attempted_at;
CREATE INDEX probe_history_attempted_at_brin ON probe_history USING brin (attempted_at);

-- Room in every page for the next version of its rows: the per-cycle rewrites become HOT
-- updates (no index entries, pruned in place) instead of new tuples plus index entries.
ALTER TABLE heartbeats SET (fillfactor = 50);
ALTER TABLE server_status SET (fillfactor = 50);

-- Trust on first use looks for servers without a pinned key among a batch: this index holds
-- only those, so the lookup costs nothing once every key is pinned.
CREATE INDEX servers_host_key_unpinned ON servers (id) WHERE host_key IS NULL;

-- Every row of these two tables is rewritten every 30 s: vacuum them as soon as a tenth of a
-- cycle's rows are dead, without throttling, so that pages keep room for the next HOT update.
ALTER TABLE heartbeats SET (autovacuum_vacuum_scale_factor = 0.1, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE server_status SET (autovacuum_vacuum_scale_factor = 0.1, autovacuum_vacuum_cost_delay = 0);
