"""What every server of the lab shares: start/stop as a context manager, a last-resort stop
when the interpreter exits (a test run or the demo that dies without cleaning up), the tail
of a log file for error messages, and the process table for stopping whole process trees."""

from __future__ import annotations

import atexit
import contextlib
import weakref
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self


class LabService:
    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _track(self) -> None:
        """Remember a started service, so that it is stopped at exit if nobody else does."""
        _LIVE.add(self)

    def _untrack(self) -> None:
        _LIVE.discard(self)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


class ProcStat(NamedTuple):
    ppid: int
    pgid: int
    state: str  # "Z" for a zombie
    start_ticks: int  # start time since boot, in clock ticks: tells a reused pid apart


def proc_table() -> dict[int, ProcStat]:
    """pid -> :class:`ProcStat` for every process visible in /proc."""
    table: dict[int, ProcStat] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = ProcStat(int(fields[1]), int(fields[2]), fields[0], int(fields[19]))
    return table


_LIVE: weakref.WeakSet[LabService] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for service in list(_LIVE):
        with contextlib.suppress(Exception):
            service.stop()
