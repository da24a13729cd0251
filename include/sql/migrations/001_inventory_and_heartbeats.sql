-- The inventory, the latest heartbeat per server, the probe history, and the status tables.

CREATE TABLE servers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    host        text NOT NULL CHECK (length(host) BETWEEN 1 AND 253 AND position(' ' in host) = 0),
    port        integer NOT NULL DEFAULT 22 CHECK (port BETWEEN 1 AND 65535),
    username    text CHECK (username IS NULL OR length(username) BETWEEN 1 AND 64),
    conn_id     text NOT NULL DEFAULT 'heartbeat_ssh' CHECK (length(conn_id) BETWEEN 1 AND 250),
    enabled     boolean NOT NULL DEFAULT true,
    host_key    text CHECK (host_key IS NULL OR host_key ~ '^[a-z0-9@.-]+ [A-Za-z0-9+/=]+$'),
    host_key_pinned_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE servers IS 'The inventory: one row per monitored server. Credentials live in Airflow Connections, never here.';
COMMENT ON COLUMN servers.host_key IS 'Pinned host public key, "<type> <base64>"; set on first use (tofu) or by hand (strict).';

-- The latest state per server, one row each, upserted by every cycle.
CREATE TABLE heartbeats (
    server_id            bigint PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
    last_success_at      timestamptz,
    last_attempt_at      timestamptz NOT NULL,
    last_cycle_id        text NOT NULL,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_ok              boolean NOT NULL,
    last_error_class     text,
    last_error_message   text,
    tcp_connect_ms       real,
    ssh_handshake_ms     real,
    auth_ms              real,
    total_ms             real,
    banner               text,
    host_key_fingerprint text,
    presented_host_key   text
);

-- Every attempt, kept for a retention period (HEARTBEAT_HISTORY_RETENTION_DAYS) enforced by the pipeline.
CREATE TABLE probe_history (
    server_id        bigint NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    cycle_id         text NOT NULL,
    attempted_at     timestamptz NOT NULL,
    ok               boolean NOT NULL,
    error_class      text,
    message          text,
    tcp_connect_ms   real,
    ssh_handshake_ms real,
    auth_ms          real,
    total_ms         real,
    PRIMARY KEY (server_id, cycle_id)
);
CREATE INDEX probe_history_attempted_at ON probe_history (attempted_at);
CREATE INDEX probe_history_server_time ON probe_history (server_id, attempted_at DESC);

-- Inputs from other systems: an active row (resolved_at IS NULL) turns a fresh heartbeat into WARNING.
CREATE TABLE alerts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id   bigint NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    message     text NOT NULL DEFAULT '',
    source      text NOT NULL DEFAULT 'external',
    raised_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CHECK (resolved_at IS NULL OR resolved_at >= raised_at)
);
CREATE INDEX alerts_active ON alerts (server_id) WHERE resolved_at IS NULL;

CREATE TABLE anomalies (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id   bigint NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '',
    source      text NOT NULL DEFAULT 'external',
    detected_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CHECK (resolved_at IS NULL OR resolved_at >= detected_at)
);
CREATE INDEX anomalies_active ON anomalies (server_id) WHERE resolved_at IS NULL;

-- The materialised status that dashboards read, rewritten by every cycle.
CREATE TABLE server_status (
    server_id        bigint PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
    status           text NOT NULL CHECK (status IN ('ONLINE', 'WARNING', 'OFFLINE')),
    reason           text NOT NULL,
    last_heartbeat_at timestamptz,
    heartbeat_age_s  double precision,
    active_alerts    integer NOT NULL DEFAULT 0,
    active_anomalies integer NOT NULL DEFAULT 0,
    status_since     timestamptz NOT NULL,
    evaluated_at     timestamptz NOT NULL
);

-- One row per status change ("flip"): history, uptime and notifications are built from it.
CREATE TABLE status_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id   bigint NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    from_status text,
    to_status   text NOT NULL,
    at          timestamptz NOT NULL,
    reason      text NOT NULL
);
CREATE INDEX status_events_server_at ON status_events (server_id, at);

-- Settings the SQL views need (the same values as the HEARTBEAT_* variables; written by each cycle).
CREATE TABLE monitor_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO monitor_settings (key, value) VALUES ('offline_after_s', '60');

-- One row per monitoring cycle: when it ran, how long, what it found.
CREATE TABLE cycles (
    cycle_id     text PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    servers      integer NOT NULL DEFAULT 0,
    ok           integer NOT NULL DEFAULT 0,
    failed       integer NOT NULL DEFAULT 0,
    online       integer,
    warning      integer,
    offline      integer
);
CREATE INDEX cycles_started_at ON cycles (started_at DESC);

-- Plain words for error classes, shared by the SQL status reason and the Python one.
CREATE TABLE error_classes (
    error_class text PRIMARY KEY,
    words       text NOT NULL
);
INSERT INTO error_classes (error_class, words) VALUES
    ('dns', 'name does not resolve'),
    ('refused', 'connection refused'),
    ('timeout', 'timed out'),
    ('unreachable', 'network unreachable'),
    ('banner', 'not an SSH server'),
    ('kex', 'SSH key exchange failed'),
    ('host_key_unknown', 'host key not known'),
    ('host_key_changed', 'host key changed'),
    ('auth', 'authentication failed'),
    ('other', 'error');
