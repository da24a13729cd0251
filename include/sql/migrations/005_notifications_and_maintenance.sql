-- Maintenance windows (silence notifications, left out of uptime) and the notification ledger.

-- A server under maintenance from starts_at (inclusive) to ends_at (exclusive).
CREATE TABLE maintenance_windows (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id   bigint NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    starts_at   timestamptz NOT NULL DEFAULT now(),
    ends_at     timestamptz NOT NULL,
    reason      text NOT NULL DEFAULT '',
    created_by  text NOT NULL DEFAULT 'cli',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX maintenance_windows_server_time ON maintenance_windows (server_id, ends_at, starts_at);
COMMENT ON TABLE maintenance_windows IS
    'Planned work: no notification for the server while a window is open, and the time is left out of uptime.';

-- One row per notification and channel: what was sent, for which status change, and when.
-- The key (subject, channel) makes every change notified at most once per channel, even when
-- the task that sends it is retried or runs twice: subject is 'status_event:<status_events.id>',
-- 'alert:<alerts.id>' (host key changed) or 'monitor_stalled:<cycle_id of the last finished cycle>'.
CREATE TABLE notification_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject        text NOT NULL,
    channel        text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('offline', 'recovered', 'host_key_changed', 'monitor_stalled')),
    server_id      bigint REFERENCES servers(id) ON DELETE CASCADE,
    event_id       bigint REFERENCES status_events(id) ON DELETE CASCADE,
    alert_id       bigint REFERENCES alerts(id) ON DELETE CASCADE,
    state          text NOT NULL CHECK (state IN ('sent', 'failed')),
    attempts       integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    last_error     text,
    first_tried_at timestamptz NOT NULL,
    last_tried_at  timestamptz NOT NULL,
    sent_at        timestamptz,
    UNIQUE (subject, channel)
);
CREATE INDEX notification_log_event ON notification_log (event_id) WHERE event_id IS NOT NULL;
COMMENT ON TABLE notification_log IS
    'The notification ledger: each status change, host key alert or monitor stall is sent once per channel.';

-- The DAG's least-privilege role (004_least_privilege_roles) records notifications. Granted here
-- too, for databases that had 004 applied before this migration existed.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_pipeline') THEN
        GRANT SELECT ON maintenance_windows TO heartbeat_pipeline;
        GRANT SELECT, INSERT, UPDATE, DELETE ON notification_log TO heartbeat_pipeline;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_reader') THEN
        GRANT SELECT ON maintenance_windows, notification_log TO heartbeat_reader;
    END IF;
END $$;
