import re
from pathlib import Path

import pytest

from heartbeat import sql
from heartbeat.config import HostKeyPolicy, NotifySettings, Settings, SettingsError, env_names, settings_from_env
from heartbeat.flapping import FlapRules
from heartbeat.status import StatusRules

pytestmark = pytest.mark.unit


def test_should_use_seed_defaults_when_nothing_is_set():
    settings = settings_from_env({})
    assert settings == Settings()
    assert (settings.offline_after_s, settings.connect_timeout_s, settings.probe_timeout_s) == (60, 5, 10)
    assert settings.host_key_policy is HostKeyPolicy.TOFU
    assert settings.history_retention_days == 7


def test_should_read_settings_from_heartbeat_variables():
    settings = settings_from_env({"HEARTBEAT_OFFLINE_AFTER_S": "90", "HEARTBEAT_HOST_KEY_POLICY": "STRICT",
                                  "HEARTBEAT_SHARD_SIZE": "1", "HEARTBEAT_KNOWN_HOSTS_FILE": "/k"})
    assert (settings.offline_after_s, settings.host_key_policy, settings.shard_size) == (90, "strict", 1)
    assert settings.known_hosts_file == "/k"


@pytest.mark.parametrize(("env", "message"), [
    ({"HEARTBEAT_OFFLINE_AFTER_S": "soon"}, "HEARTBEAT_OFFLINE_AFTER_S='soon' is not a valid value"),
    ({"HEARTBEAT_HOST_KEY_POLICY": "yolo"}, "HEARTBEAT_HOST_KEY_POLICY"),
    ({"HEARTBEAT_CONCURRENCY": "0"}, "concurrency must be at least 1"),
    ({"HEARTBEAT_CONNECT_TIMEOUT_S": "20"}, "cannot exceed probe_timeout_s"),
    ({"HEARTBEAT_OFFLINE_AFTER_S": "0"}, "offline_after_s must be greater than 0.*HEARTBEAT_OFFLINE_AFTER_S"),
    ({"HEARTBEAT_RECOVERY_THRESHOLD": "0"}, "recovery_threshold must be at least 1.*HEARTBEAT_RECOVERY_THRESHOLD"),
    ({"HEARTBEAT_FLAP_WINDOW": "2"}, "flap window must be at least 3.*HEARTBEAT_FLAP_WINDOW"),
    ({"HEARTBEAT_FLAP_LOW_PCT": "60"}, "flap thresholds need.*HEARTBEAT_FLAP_LOW_PCT"),
    ({"HEARTBEAT_NOTIFY_AFTER_S": "soon"}, "HEARTBEAT_NOTIFY_AFTER_S='soon' is not a valid value"),
    ({"HEARTBEAT_NOTIFY_MAX_ATTEMPTS": "0"}, "max_attempts must be at least 1"),
    ({"HEARTBEAT_NOTIFY_STALL_AFTER_S": "-5"}, "stall_after_s must be greater than 0"),
], ids=["not-a-number", "unknown-policy", "no-concurrency", "connect-over-probe", "offline-zero",
        "recovery-zero", "flap-window", "flap-thresholds", "notify-not-a-number", "notify-attempts",
        "notify-stall"])
def test_should_refuse_invalid_settings_loudly(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        settings_from_env(env)


def test_should_read_notification_settings_with_the_others():
    settings = settings_from_env({"HEARTBEAT_NOTIFY_AFTER_S": "30", "HEARTBEAT_NOTIFY_STALL_AFTER_S": "600",
                                  "HEARTBEAT_NOTIFY_WEBHOOK_CONN_ID": "ops_hook", "HEARTBEAT_NOTIFY_MAX_ATTEMPTS": "5"})
    assert settings.notify == NotifySettings(notify_after_s=30, stall_after_s=600, max_attempts=5,
                                             webhook_conn_id="ops_hook")
    assert settings_from_env({}).notify == NotifySettings()


def test_should_name_every_variable_it_reads():
    names = env_names()
    assert len(names) == len(set(names))
    assert {"HEARTBEAT_OFFLINE_AFTER_S", "HEARTBEAT_DB_CONN_ID", "HEARTBEAT_NOTIFY_AFTER_S",
            "HEARTBEAT_NOTIFY_STALL_AFTER_S", "HEARTBEAT_NOTIFY_MAX_ATTEMPTS", "HEARTBEAT_NOTIFY_EMAIL_CONN_ID",
            "HEARTBEAT_NOTIFY_WEBHOOK_CONN_ID", "HEARTBEAT_NOTIFY_TIMEOUT_S"} <= set(names)
    words = {"HEARTBEAT_HOST_KEY_POLICY": "strict", "HEARTBEAT_KNOWN_HOSTS_FILE": "/k",
             "HEARTBEAT_KEX_ALGS": "curve25519-sha256", "HEARTBEAT_FLAP_HIGH_PCT": "60",
             "HEARTBEAT_INCIDENT_MIN_SHARE": "0.9", "HEARTBEAT_INCIDENT_DIMENSIONS": "prefix"}
    for name in names:
        value = words.get(name, "x" if name.endswith("CONN_ID") else "9")
        assert settings_from_env({name: value}) != Settings(), f"{name} is not read"


def test_should_let_the_rules_validate_themselves():
    with pytest.raises(ValueError, match="recovery_threshold must be at least 1"):
        StatusRules(recovery_threshold=0)
    with pytest.raises(ValueError, match="flap window must be at least 3"):
        FlapRules(window=2)
    with pytest.raises(SettingsError, match="timeout_s must be greater than 0"):
        NotifySettings(timeout_s=0)


def test_should_split_named_queries():
    text = "-- header\n-- name: first\nSELECT 1;\n\n-- name: second\n-- why\nSELECT %(x)s;\n"
    assert sql.parse_named_queries(text) == {"first": "SELECT 1", "second": "-- why\nSELECT %(x)s"}


def test_should_find_every_query_the_code_names():
    for name in ("load_enabled_servers", "materialise_status", "upsert_heartbeats", "status_report"):
        assert sql.query(name)


STORE = Path(sql.__file__).parent / "store"
QUERY_CALL = re.compile(r'sql\.query\("([a-z0-9_]+)"\)')


@pytest.mark.parametrize("module", ["inventory", "results", "inputs", "notifications", "maintenance", "dashboard",
                                    "incidents"])
def test_should_run_exactly_the_named_queries_of_its_own_file_in_each_store_module(module):
    used = set(QUERY_CALL.findall((STORE / f"{module}.py").read_text()))
    defined = set(sql.parse_named_queries((sql.sql_dir() / "queries" / f"{module}.sql").read_text()))
    assert used == defined, f"run but not in {module}.sql: {used - defined}; never run: {defined - used}"


def test_should_have_a_store_module_for_every_file_of_named_queries():
    assert {p.stem for p in (sql.sql_dir() / "queries").glob("*.sql")} <= {p.stem for p in STORE.glob("*.py")}


def test_should_name_sql_queries_only_in_the_store():
    root = Path(sql.__file__).parents[2]
    sources = [p for folder in ("plugins", "dags", "heartbeat_lab", "bench") for p in (root / folder).rglob("*.py")]
    outside = [str(p.relative_to(root)) for p in sources
               if STORE not in p.parents and p.name != "sql.py" and "sql.query(" in p.read_text()]
    assert not outside, f"name queries through heartbeat.store instead: {outside}"


def test_should_number_migrations_uniquely_and_in_order():
    versions = [m.version for m in sql.migrations()]
    assert versions == sorted(set(versions)) and versions[0] == 1


def test_should_offer_p256_first_by_default_and_take_a_configured_key_exchange_list():
    from heartbeat.cycle import probe_options

    default = probe_options(settings_from_env({}))
    assert default.kex_algs[0] == "ecdh-sha2-nistp256"
    assert "curve25519-sha256" in default.kex_algs  # servers without P-256 still agree on something
    assert not any(alg.startswith("gss-") for alg in default.kex_algs)
    chosen = probe_options(settings_from_env({"HEARTBEAT_KEX_ALGS": " curve25519-sha256, ecdh-sha2-nistp384 "}))
    assert chosen.kex_algs == ("curve25519-sha256", "ecdh-sha2-nistp384")


def test_should_name_an_unknown_key_exchange_algorithm():
    from heartbeat.cycle import probe_options

    with pytest.raises(SettingsError,
                       match=r"HEARTBEAT_KEX_ALGS: unknown .*curve-typo.*supported: .*curve25519-sha256"):
        probe_options(settings_from_env({"HEARTBEAT_KEX_ALGS": "curve-typo"}))
