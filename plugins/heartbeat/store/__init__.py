"""The heartbeat database (PostgreSQL through psycopg 3): the one place that names SQL.

Callers call typed functions grouped by concern and get frozen records back; the SQL is in
``include/sql`` (migrations, views, and one file of named queries per module here, with bound
parameters). Every function takes an open connection; each write runs in its own transaction,
so a failure leaves nothing half-written.

- :mod:`~heartbeat.store.schema`: connect, migrate, check the schema;
- :mod:`~heartbeat.store.inventory`: the servers, as the cycle reads them and the command line edits them;
- :mod:`~heartbeat.store.results`: login results, materialised status, cycle records, retention;
- :mod:`~heartbeat.store.inputs`: alerts and anomalies;
- :mod:`~heartbeat.store.notifications`: what is due on a channel, and the ledger;
- :mod:`~heartbeat.store.maintenance`: maintenance windows;
- :mod:`~heartbeat.store.dashboard`: what the Fleet heartbeat page shows.
"""

from heartbeat.store._records import Connection
from heartbeat.store.dashboard import (
    ActiveInput,
    DashboardServer,
    FleetSummary,
    LatencyPercentiles,
    LatencyPoint,
    StatusChange,
    active_inputs,
    dashboard_server,
    dashboard_servers,
    fleet_summary,
    latency_history,
    latency_percentiles_1h,
    maintenance_windows,
    status_changes,
)
from heartbeat.store.inputs import (
    InputRecord,
    list_alerts,
    list_anomalies,
    raise_alert,
    raise_anomaly,
    resolve_alert,
    resolve_anomaly,
)
from heartbeat.store.inventory import (
    HostKeys,
    ServerRecord,
    add_server,
    enabled_server_count,
    host_keys,
    invalid_row_result,
    list_servers,
    load_inventory,
    pin_host_key,
    remove_server,
    set_server_enabled,
    upsert_servers,
)
from heartbeat.store.maintenance import MaintenanceWindow, add_maintenance, end_maintenance, list_maintenance
from heartbeat.store.notifications import (
    Claim,
    FinishedCycle,
    HostKeyAlertDue,
    NotificationLogEntry,
    StatusChangeDue,
    claim_notification,
    cycle_started_at,
    host_key_alerts_due,
    last_finished_cycle,
    list_notifications,
    mark_notification_failed,
    notification_done,
    status_changes_due,
)
from heartbeat.store.results import (
    BATCH_COLUMNS,
    BATCH_TYPES,
    CycleRecord,
    ProbeCounts,
    StatusReportRow,
    cycle_probe_counts,
    finish_cycle,
    get_cycle,
    last_cycle,
    materialise_status,
    prune_history,
    record_results,
    start_cycle,
    status_report,
)
from heartbeat.store.schema import LEDGER_DDL, SchemaError, check_schema, connect, migrate

__all__ = [
    "BATCH_COLUMNS",
    "BATCH_TYPES",
    "LEDGER_DDL",
    "ActiveInput",
    "Claim",
    "Connection",
    "CycleRecord",
    "DashboardServer",
    "FinishedCycle",
    "FleetSummary",
    "HostKeyAlertDue",
    "HostKeys",
    "InputRecord",
    "LatencyPercentiles",
    "LatencyPoint",
    "MaintenanceWindow",
    "NotificationLogEntry",
    "ProbeCounts",
    "SchemaError",
    "ServerRecord",
    "StatusChange",
    "StatusChangeDue",
    "StatusReportRow",
    "active_inputs",
    "add_maintenance",
    "add_server",
    "check_schema",
    "claim_notification",
    "connect",
    "cycle_probe_counts",
    "cycle_started_at",
    "dashboard_server",
    "dashboard_servers",
    "enabled_server_count",
    "end_maintenance",
    "finish_cycle",
    "fleet_summary",
    "get_cycle",
    "host_key_alerts_due",
    "host_keys",
    "invalid_row_result",
    "last_cycle",
    "last_finished_cycle",
    "latency_history",
    "latency_percentiles_1h",
    "list_alerts",
    "list_anomalies",
    "list_maintenance",
    "list_notifications",
    "list_servers",
    "load_inventory",
    "maintenance_windows",
    "mark_notification_failed",
    "materialise_status",
    "migrate",
    "notification_done",
    "pin_host_key",
    "prune_history",
    "raise_alert",
    "raise_anomaly",
    "record_results",
    "remove_server",
    "resolve_alert",
    "resolve_anomaly",
    "set_server_enabled",
    "start_cycle",
    "status_changes",
    "status_changes_due",
    "status_report",
    "upsert_servers",
]

