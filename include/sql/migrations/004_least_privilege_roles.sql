-- Least privilege. Three group roles (NOLOGIN); give each login role the one it needs:
--   heartbeat_pipeline  the DAG: reads the inventory, writes results, status, events, cycles;
--                       may only pin host keys in the inventory, never add, change or drop servers
--   heartbeat_reader    dashboards and Grafana: read everything, write nothing
--   heartbeat_inputs    other systems: raise and resolve alerts and anomalies
-- The role that runs `heartbeat migrate` owns the schema and edits the inventory (the command
-- line's `servers` commands); keep it out of Airflow's task environment.
-- Roles are cluster-wide: they are created when the migrating role may (CREATEROLE), and
-- granted to only when they exist, so a migration without that right still succeeds.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['heartbeat_pipeline', 'heartbeat_reader', 'heartbeat_inputs'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE NOTICE 'cannot create role %: ask a superuser to run CREATE ROLE % NOLOGIN', role_name, role_name;
            END;
        END IF;
    END LOOP;
END $$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_reader') THEN
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO heartbeat_reader', current_database());
        GRANT USAGE ON SCHEMA public TO heartbeat_reader;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO heartbeat_reader;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO heartbeat_reader;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_inputs') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO heartbeat_inputs', current_database());
        GRANT USAGE ON SCHEMA public TO heartbeat_inputs;
        GRANT SELECT ON servers, alerts, anomalies TO heartbeat_inputs;
        GRANT INSERT, UPDATE (resolved_at, message) ON alerts TO heartbeat_inputs;
        GRANT INSERT, UPDATE (resolved_at, description) ON anomalies TO heartbeat_inputs;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'heartbeat_pipeline') THEN
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO heartbeat_pipeline', current_database());
        GRANT USAGE ON SCHEMA public TO heartbeat_pipeline;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO heartbeat_pipeline;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO heartbeat_pipeline;
        GRANT UPDATE (host_key, host_key_pinned_at, updated_at) ON servers TO heartbeat_pipeline;
        GRANT INSERT, UPDATE ON heartbeats, monitor_settings TO heartbeat_pipeline;
        GRANT INSERT, UPDATE, DELETE ON probe_history, cycles, server_status TO heartbeat_pipeline;
        GRANT INSERT ON status_events, alerts TO heartbeat_pipeline;
        IF to_regclass('notification_log') IS NOT NULL THEN
            GRANT INSERT, UPDATE, DELETE ON notification_log TO heartbeat_pipeline;
        END IF;
    END IF;
END $$;
