-- Debounce, flap detection and the monitor's own health.

ALTER TABLE heartbeats
    ADD COLUMN consecutive_successes integer NOT NULL DEFAULT 0,
    ADD COLUMN flapping boolean NOT NULL DEFAULT false,
    ADD COLUMN flap_percent real;

ALTER TABLE server_status
    ADD COLUMN flapping boolean NOT NULL DEFAULT false;

INSERT INTO monitor_settings (key, value) VALUES
    ('failure_threshold', '0'),
    ('recovery_threshold', '1'),
    ('stale_after_s', '60')
ON CONFLICT (key) DO NOTHING;

CREATE INDEX cycles_finished_at ON cycles (finished_at DESC);
