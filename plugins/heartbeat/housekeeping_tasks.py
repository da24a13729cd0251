"""Task callables of the ``heartbeat_housekeeping`` DAG (thin: clock and settings, then work)."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from heartbeat import housekeeping
from heartbeat.config import settings_from_env

log = logging.getLogger(__name__)


def clean_metadata_db() -> str:
    settings = settings_from_env()
    cutoff = housekeeping.retention_cutoff(datetime.now(UTC), settings.metadata_retention_days)
    output = housekeeping.clean_metadata_db(cutoff)
    log.info("airflow db clean before %s:\n%s", cutoff.isoformat(), output)
    return cutoff.isoformat()


def prune_task_logs() -> dict[str, int]:
    settings = settings_from_env()
    folder = Path(os.environ.get("AIRFLOW__LOGGING__BASE_LOG_FOLDER")
                  or Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "logs")
    cutoff = housekeeping.retention_cutoff(datetime.now(UTC), settings.log_retention_days)
    report = housekeeping.prune_task_logs(folder, cutoff)
    log.info("deleted %d log files (%d bytes) older than %s from %s", report.files_deleted,
             report.bytes_deleted, cutoff.isoformat(), folder)
    return {"files_deleted": report.files_deleted, "bytes_deleted": report.bytes_deleted}


def prune_probe_history() -> int:
    from heartbeat import cycle, store  # the database driver: only in the task that needs it

    settings = settings_from_env()
    with cycle.db_connect(settings) as conn:
        deleted = store.prune_history(conn, datetime.now(UTC), settings.history_retention_days)
    log.info("deleted %d probe history rows older than %g days", deleted, settings.history_retention_days)
    return deleted
