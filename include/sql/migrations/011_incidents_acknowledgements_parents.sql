-- Shared-cause incidents, acknowledgements, typed parents, and the ledger rows they need.

-- One incident: servers that failed together and share something (dimension, group_key) with the
-- same error class, opened instead of one page per server. Members keep their own statuses.
CREATE TABLE incidents (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dimension       text NOT NULL CHECK (length(dimension) BETWEEN 1 AND 40),
    group_key       text NOT NULL CHECK (length(group_key) BETWEEN 1 AND 300),
    error_class     text NOT NULL,
    population      integer NOT NULL CHECK (population >= 1),
    first_failed_at timestamptz NOT NULL,
    opened_at       timestamptz NOT NULL,
    closed_at       timestamptz,
    close_reason    text,
    CHECK (closed_at IS NULL OR closed_at >= opened_at)
);
-- At most one open incident per shared cause: later failures of the same cause join it.
CREATE UNIQUE INDEX incidents_open_cause ON incidents (dimension, group_key, error_class) WHERE closed_at IS NULL;
COMMENT ON TABLE incidents IS
    'Shared-cause incidents: many servers failing together with one error class and one thing in common (address prefix, SSH connection, parent, ...); one notification instead of one per server.';

-- Which servers an incident explains; left_at is set when the member recovered (or was disabled).
CREATE TABLE incident_members (
    incident_id bigint NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    server_id   bigint NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    event_id    bigint REFERENCES status_events(id) ON DELETE SET NULL,
    joined_at   timestamptz NOT NULL,
    left_at     timestamptz,
    PRIMARY KEY (incident_id, server_id)
);
CREATE INDEX incident_members_server ON incident_members (server_id) WHERE left_at IS NULL;
CREATE INDEX incident_members_event ON incident_members (event_id);

-- An acknowledgement of a server's outage or of an incident: who, why, until when. It stops
-- repeats and escalations; it ends by itself when the server recovers or the incident closes.
CREATE TABLE acknowledgements (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id       bigint REFERENCES servers(id) ON DELETE CASCADE,
    incident_id     bigint REFERENCES incidents(id) ON DELETE CASCADE,
    acknowledged_by text NOT NULL CHECK (length(acknowledged_by) BETWEEN 1 AND 200),
    reason          text NOT NULL DEFAULT '' CHECK (length(reason) <= 2000),
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,
    ended_at        timestamptz,
    end_reason      text,
    CHECK ((server_id IS NULL) <> (incident_id IS NULL)),
    CHECK (expires_at IS NULL OR expires_at > created_at)
);
CREATE INDEX acknowledgements_open ON acknowledgements (server_id, incident_id) WHERE ended_at IS NULL;
COMMENT ON TABLE acknowledgements IS
    'Someone is on it: no repeat or escalation while active (ended_at NULL and expires_at in the future).';

-- A typed parent: the server this one depends on (a switch, a hypervisor, a bastion).
ALTER TABLE servers
    ADD COLUMN parent_id bigint REFERENCES servers(id) ON DELETE SET NULL,
    ADD COLUMN parent_kind text CHECK (parent_kind IN ('switch', 'router', 'hypervisor', 'bastion', 'host')),
    ADD CONSTRAINT servers_parent_not_self CHECK (parent_id IS NULL OR parent_id <> id),
    ADD CONSTRAINT servers_parent_typed CHECK ((parent_id IS NULL) = (parent_kind IS NULL));
CREATE INDEX servers_parent ON servers (parent_id) WHERE parent_id IS NOT NULL;

-- The ledger tells incidents, repeats and escalations too.
ALTER TABLE notification_log DROP CONSTRAINT IF EXISTS notification_log_kind_check;
ALTER TABLE notification_log ADD CONSTRAINT notification_log_kind_check CHECK (kind IN (
    'offline', 'recovered', 'host_key_changed', 'monitor_stalled', 'incident', 'incident_resolved',
    'repeat', 'escalation'));
ALTER TABLE notification_log ADD COLUMN incident_id bigint REFERENCES incidents(id) ON DELETE CASCADE;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_pipeline') THEN
        GRANT SELECT, INSERT, UPDATE ON incidents, incident_members TO heartbeat_pipeline;
        GRANT SELECT, UPDATE (ended_at, end_reason) ON acknowledgements TO heartbeat_pipeline;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_reader') THEN
        GRANT SELECT ON incidents, incident_members, acknowledgements TO heartbeat_reader;
    END IF;
END $$;
