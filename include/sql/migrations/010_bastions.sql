-- Bastions: a server may be reached through another inventory server (its jump host), and the
-- jump path is a dependency: when the bastion hop fails, its servers are not probed, do not page
-- one by one, and the time is left out of their uptime.

-- The inventory server this one is reached through (by name; NULL: reached directly). Deferred,
-- so an import can name a bastion that comes later in the same file. Chains (at most 3 hops),
-- cycles and disabled bastions are refused by the inventory's own check (heartbeat.inventory).
ALTER TABLE servers ADD COLUMN via text;
ALTER TABLE servers ADD CONSTRAINT servers_via_fkey FOREIGN KEY (via) REFERENCES servers (name)
    ON UPDATE CASCADE ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE servers ADD CONSTRAINT servers_via_not_self CHECK (via IS DISTINCT FROM name);
CREATE INDEX servers_via ON servers (via) WHERE via IS NOT NULL;
COMMENT ON COLUMN servers.via IS
    'The inventory server (its name) this one is reached through: a bastion, or jump host. NULL: directly.';

INSERT INTO error_classes (error_class, words) VALUES
    ('path_down', 'unreachable via its bastion'),
    ('forwarding_refused', 'its bastion refused to forward to it');

-- One row per outage of a bastion hop: opened by the first cycle whose hop failed, closed by the
-- first one whose hop worked. Its servers' uptime leaves the time out; one notification tells it.
CREATE TABLE path_outages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bastion_id  bigint NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    cause       text NOT NULL,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE UNIQUE INDEX path_outages_open ON path_outages (bastion_id) WHERE ended_at IS NULL;
CREATE INDEX path_outages_bastion_time ON path_outages (bastion_id, started_at);
COMMENT ON TABLE path_outages IS
    'Outages of a bastion hop as the monitor saw them: its servers were not probed, are left out of uptime, and one notification names the bastion.';

-- Its notification is an incident whose shared cause is the bastion: ledger kind 'incident'
-- (migration 011), subject 'path_down:<path_outages.id>'.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_pipeline') THEN
        GRANT SELECT, INSERT, UPDATE ON path_outages TO heartbeat_pipeline;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_reader') THEN
        GRANT SELECT ON path_outages TO heartbeat_reader;
    END IF;
END $$;
