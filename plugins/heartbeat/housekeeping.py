"""Keeping 2,880 runs a day within bounds: the Airflow metadata database (``airflow db
clean``), task log files, and the heartbeat probe history. Run hourly by the
``heartbeat_housekeeping`` DAG; each step takes its cut-off time as an argument."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

# Tables that grow with every run; the rest (connections, variables, users) are never touched.
METADATA_TABLES = ("dag_run", "task_instance", "task_instance_history", "xcom", "log", "job",
                   "task_reschedule", "dag_version", "callback", "deadline")


@dataclass(frozen=True)
class PruneReport:
    files_deleted: int
    bytes_deleted: int
    dirs_removed: int


def prune_task_logs(log_folder: Path, older_than: datetime) -> PruneReport:
    """Delete log files last written before ``older_than`` and the folders left empty.

    Only regular files under ``log_folder`` are considered; symlinks are never followed.
    """
    if not log_folder.is_dir():
        return PruneReport(0, 0, 0)
    cutoff = older_than.timestamp()
    files = size = dirs = 0
    for root, dirnames, filenames in os.walk(log_folder, topdown=False, followlinks=False):
        for name in filenames:
            path = Path(root, name)
            try:
                stat = path.lstat()
                if path.is_symlink() or stat.st_mtime >= cutoff:
                    continue
                path.unlink()
            except OSError as exc:
                log.warning("cannot delete %s: %s", path, exc.strerror)
                continue
            files += 1
            size += stat.st_size
        for name in dirnames:
            folder = Path(root, name)
            try:
                if not folder.is_symlink() and not any(folder.iterdir()):
                    folder.rmdir()
                    dirs += 1
            except OSError:
                continue
    return PruneReport(files, size, dirs)


def db_clean_command(clean_before: datetime, tables: tuple[str, ...] = METADATA_TABLES) -> list[str]:
    """The ``airflow db clean`` command line (Airflow always keeps each DAG's latest run)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    return [airflow, "db", "clean", "--clean-before-timestamp", clean_before.isoformat(),
            "--tables", ",".join(tables), "--skip-archive", "--yes", "--error-on-cleanup-failure"]


def clean_metadata_db(clean_before: datetime, timeout_s: float = 600) -> str:
    """Run ``airflow db clean`` in a subprocess: Airflow 3 tasks may not use the metadata
    database directly, its command line may (it needs the database settings in the worker's
    environment, as LocalExecutor and the compose stack have)."""
    proc = subprocess.run(db_clean_command(clean_before), capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db clean failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout[-4000:]


def retention_cutoff(now: datetime, days: float) -> datetime:
    return now - timedelta(days=days)
