"""The Fleet heartbeat app: the page (``/heartbeat/``) and its JSON API (``/heartbeat/api/...``).

Every route needs a logged-in Airflow user (see :mod:`heartbeat.web.auth`); only the page's
static files are public. The data comes from the heartbeat database (the ``heartbeat_db``
connection) through the dashboard views, read by :mod:`heartbeat.store.dashboard`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from heartbeat import store
from heartbeat.web.auth import (
    AuthError,
    authenticate,
    authorize,
    login_url,
    may_edit,
    require_airflow_user,
    require_edit_rights,
)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DSN_TTL_S = 60.0
SEVERITY = {"OFFLINE": 0, "STALE": 1, "WARNING": 2, "ONLINE": 3}
NO_STORE = {"Cache-Control": "no-store"}
M = TypeVar("M", bound=BaseModel)

API_DESCRIPTION = """\
The JSON behind the Fleet heartbeat page of the Airflow UI. Every endpoint needs a logged-in
Airflow user: the UI's `_token` cookie, or `Authorization: Bearer <JWT>` with a token from
`POST /auth/token` (`{"username": ..., "password": ...}`). Without one: 401; with an invalid
or expired one: 401/403. Times are ISO 8601 in UTC; durations in seconds; latencies in ms;
uptime in percent (null when nothing was observed).
"""


class Status(StrEnum):
    """STALE: the monitor itself has stalled, so the server's status is not known now."""

    ONLINE = "ONLINE"
    WARNING = "WARNING"
    OFFLINE = "OFFLINE"
    STALE = "STALE"


class SortKey(StrEnum):
    NAME = "name"
    STATUS = "status"
    AGE = "age"
    LATENCY = "latency"
    UPTIME_24H = "uptime_24h"
    UPTIME_7D = "uptime_7d"


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"


class ServerRow(BaseModel):
    name: str
    host: str
    port: int
    status: Status
    reason: str = Field(description="why the server has this status, in words")
    status_since: datetime | None = Field(description="when it changed to this status (null: not recorded yet)")
    last_heartbeat_at: datetime | None
    heartbeat_age_s: float | None = Field(description="seconds since the last heartbeat, at as_of")
    last_attempt_at: datetime | None
    last_error_class: str | None
    consecutive_failures: int
    last_latency_ms: float | None = Field(description="total login time of the last attempt, when it succeeded")
    uptime_24h_pct: float | None
    uptime_7d_pct: float | None
    uptime_30d_pct: float | None
    active_alerts: int
    active_anomalies: int
    flapping: bool = Field(description="its logins keep changing between success and failure")
    flap_percent: float | None
    in_maintenance: bool
    maintenance_until: datetime | None
    maintenance_reason: str | None
    incident_id: int | None = Field(None, description="the open shared-cause incident it is a member of")
    acknowledged_by: str | None = Field(None, description="who acknowledged its outage (while active)")
    via: str | None = Field(default=None, description="the bastion (an inventory server) it is reached through; "
                            "null: directly")
    site: str = Field("default", description="the network it is probed from (its workers serve queue heartbeat-<site>)")
    last_worker: str | None = Field(None, description="the worker that made the last attempt")


class ServerList(BaseModel):
    as_of: datetime = Field(description="the database time the figures were computed at")
    count: int
    servers: list[ServerRow]


class LastCycle(BaseModel):
    cycle_id: str
    started_at: datetime
    finished_at: datetime
    duration_s: float | None
    age_s: float | None = Field(description="seconds since it finished, at as_of")
    servers: int
    ok: int
    failed: int


class SiteHealth(BaseModel):
    site: str
    servers: int = Field(description="enabled servers in the site")
    last_attempt_at: datetime | None = Field(description="the last attempt recorded from the site")
    last_worker: str | None = Field(description="the worker that made it")
    last_attempt_age_s: float | None
    stalled: bool = Field(description="no attempt from the site for stale_after_s: its servers read STALE")
    health: str = Field(description="ok, not probed yet, or since when no probe came from the site")


class Summary(BaseModel):
    as_of: datetime
    online: int
    warning: int
    offline: int
    stale: int
    total: int
    in_maintenance: int
    last_cycle: LastCycle | None
    stalled: bool = Field(description="no cycle finished within stale_after_s (or none ever): servers read STALE")
    health: str = Field(description="the monitor's health in words: ok, or since when it has stalled")
    stale_after_s: float
    offline_after_s: float
    sites: list[SiteHealth] = Field(description="each site's monitor: its last attempt and worker, stalled or not")


class StatusChange(BaseModel):
    at: datetime
    from_status: Status | None
    to_status: Status
    reason: str


class LatencyPoint(BaseModel):
    at: datetime
    ok: bool
    total_ms: float | None
    error_class: str | None
    site: str | None = Field(description="the site the attempt was made from (null: recorded by the cycle itself)")
    worker: str | None = Field(description="the worker that made it")


class LatencyPercentiles(BaseModel):
    attempts: int
    successes: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class ActiveInput(BaseModel):
    type: str = Field(description="alert or anomaly")
    id: int
    kind: str
    message: str
    source: str
    since: datetime


class MaintenanceWindow(BaseModel):
    id: int
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str


class ServerDetail(BaseModel):
    as_of: datetime
    since: datetime = Field(description="start of the period the history covers")
    server: ServerRow
    status_changes: list[StatusChange] = Field(
        description="changes in the period, after the last change before it (the status the period began in)")
    latency: list[LatencyPoint] = Field(description="attempts in the period, oldest first")
    latency_1h: LatencyPercentiles
    inputs: list[ActiveInput] = Field(description="active alerts and anomalies")
    maintenance: list[MaintenanceWindow] = Field(description="open and future maintenance windows")


class Incident(BaseModel):
    id: int
    title: str = Field(description="what happened, in words")
    dimension: str = Field(description="what the members share: parent, connection or prefix")
    group_key: str
    error_class: str
    members: int
    still_failing: int
    population: int = Field(description="enabled servers sharing the cause when it opened")
    first_failed_at: datetime
    opened_at: datetime
    acknowledged_by: str | None
    member_names: list[str]


class IncidentList(BaseModel):
    as_of: datetime
    may_acknowledge: bool = Field(description="whether this user has edit rights (may acknowledge)")
    incidents: list[Incident]


class AcknowledgementRequest(BaseModel):
    server: str | None = Field(None, max_length=128, description="a server that is OFFLINE")
    incident_id: int | None = Field(None, description="an open incident")
    reason: str = Field(min_length=1, max_length=2000, description="why; e.g. what is being done")
    expires_in_minutes: float | None = Field(None, description="expiry; none: until it recovers (or closes)")


class EscalationRequest(BaseModel):
    server: str | None = Field(None, max_length=128, description="a server whose outage was told")
    incident_id: int | None = Field(None, description="an open incident that was told")


class EscalationSent(BaseModel):
    channels: int = Field(description="escalation channels (HEARTBEAT_NOTIFY_ESCALATION_CHANNELS)")
    sent: int
    skipped: int = Field(description="channels that had it already")
    failed: int


class AcknowledgementCreated(BaseModel):
    id: int
    acknowledged_by: str
    expires_at: datetime | None


class Database:
    """The heartbeat database of the ``heartbeat_db`` connection, opened through the Postgres
    provider's hook (every extra of the connection applies); the Connection is looked up once a
    minute. ``dsn``: a fixed database instead (tests)."""

    def __init__(self, dsn: Callable[[], str] | None = None) -> None:
        self._lookup: Callable[[], str | tuple[str, Any]] = dsn or self._from_connection
        self._lock = threading.Lock()
        self._target: str | tuple[str, Any] | None = None
        self._looked_up_at = 0.0

    @staticmethod
    def _from_connection() -> tuple[str, Any]:
        from heartbeat.config import settings_from_env
        from heartbeat.connections import get_connection

        conn_id = settings_from_env().db_conn_id
        return conn_id, get_connection(conn_id)

    def target(self) -> str | tuple[str, Any]:
        """The DSN, or the connection id and its Airflow Connection."""
        with self._lock:
            if self._target is None or time.monotonic() - self._looked_up_at > DSN_TTL_S:
                self._target = self._lookup()
                self._looked_up_at = time.monotonic()
            return self._target

    def open(self) -> psycopg.Connection[Any]:
        target = self.target()
        if isinstance(target, str):
            return store.connect(target, connect_timeout_s=5)
        from heartbeat.connections import heartbeat_db_connection

        conn_id, connection = target
        return heartbeat_db_connection(conn_id, connect_timeout_s=5, connection=connection)

    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        """FastAPI dependency: one connection per request (a dashboard refreshes every 10 s)."""
        try:
            conn = self.open()
        except Exception as exc:  # no connection defined, database down: the page says so
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc).strip().splitlines()[0]) from None
        try:
            yield conn
        finally:
            conn.close()


def database_connection(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """FastAPI dependency: a connection to the app's :class:`Database`, closed after the request."""
    yield from request.app.state.database.connect()


User = Annotated[Any, Depends(require_airflow_user)]
Conn = Annotated[psycopg.Connection[Any], Depends(database_connection)]


def server_row(row: store.DashboardServer, state: store.ServerIncidentState | None = None) -> ServerRow:
    fields: dict[str, Any] = {k: getattr(row, k) for k in ServerRow.model_fields if k != "name" and hasattr(row, k)}
    if state is not None:
        fields.update(incident_id=state.incident_id, acknowledged_by=state.acknowledged_by)
    return ServerRow(name=row.server_name, **fields)


def _model(model: type[M], record: Any) -> M:
    """The API model of a store record: the fields the API shows, by name."""
    return model(**{k: getattr(record, k) for k in model.model_fields})


def sort_servers(rows: list[ServerRow], key: SortKey, order: Order) -> list[ServerRow]:
    """Sort by ``key`` (severity for status), unknown values last whatever the order; ties by name."""
    def value(row: ServerRow) -> Any:
        return {
            SortKey.NAME: row.name.lower(),
            SortKey.STATUS: SEVERITY[row.status],
            SortKey.AGE: row.heartbeat_age_s,
            SortKey.LATENCY: row.last_latency_ms,
            SortKey.UPTIME_24H: row.uptime_24h_pct,
            SortKey.UPTIME_7D: row.uptime_7d_pct,
        }[key]

    by_name = sorted(rows, key=lambda r: r.name.lower())
    known = [r for r in by_name if value(r) is not None]
    unknown = [r for r in by_name if value(r) is None]
    return sorted(known, key=value, reverse=order is Order.DESC) + unknown


def summary_from_row(row: store.FleetSummary) -> Summary:
    last = None
    if row.last_cycle_id is not None:
        last = LastCycle.model_validate({
            "cycle_id": row.last_cycle_id, "started_at": row.last_cycle_started_at,
            "finished_at": row.last_cycle_finished_at, "duration_s": row.last_cycle_duration_s,
            "age_s": row.last_cycle_age_s, "servers": row.last_cycle_servers, "ok": row.last_cycle_ok,
            "failed": row.last_cycle_failed,
        })
    return Summary(last_cycle=last, **{k: getattr(row, k) for k in Summary.model_fields if k != "last_cycle"})


def create_app(database: Database | None = None) -> FastAPI:
    """The app; ``database`` overrides where the data comes from (tests). The thresholds shown
    come from the database (``monitor_settings``, written by every cycle), not from this process."""
    db = database or Database()

    app = FastAPI(
        title="Fleet heartbeat API", version="1", description=API_DESCRIPTION,
        docs_url=None, redoc_url=None, openapi_url=None,
    )
    app.state.database = db
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(psycopg.errors.UndefinedTable)
    @app.exception_handler(psycopg.errors.UndefinedFunction)
    async def _no_schema(request: Request, exc: psycopg.Error) -> JSONResponse:
        return JSONResponse({"detail": "the heartbeat database lacks the dashboard views: run `heartbeat migrate`"},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.exception_handler(psycopg.OperationalError)
    async def _database_down(request: Request, exc: psycopg.Error) -> JSONResponse:
        return JSONResponse({"detail": f"the heartbeat database failed: {str(exc).strip().splitlines()[0]}"},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        """The page; without a valid login, off to Airflow's login page and back."""
        try:
            user = await authenticate(request)
        except AuthError:
            return RedirectResponse(login_url(str(request.url)), status_code=status.HTTP_303_SEE_OTHER)
        authorize(user)
        return FileResponse(STATIC_DIR / "index.html", headers=NO_STORE)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(user: User) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs(user: User) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="openapi.json", title="Fleet heartbeat API")

    @app.get("/api/summary", response_model=Summary, tags=["fleet"])
    def summary(user: User, conn: Conn, response: Response) -> Summary:
        """The monitor's health: counts per status, servers in maintenance, the last cycle (when it
        finished, how long it took) and whether the monitor has stalled."""
        response.headers.update(NO_STORE)
        return summary_from_row(store.fleet_summary(conn))

    @app.get("/api/servers", response_model=ServerList, tags=["fleet"])
    def servers(
        user: User, conn: Conn, response: Response,
        status_filter: Annotated[Status | None, Query(alias="status", description="only this status")] = None,
        name: Annotated[str | None, Query(max_length=128, description="only names containing this (any case)")] = None,
        site: Annotated[str | None, Query(max_length=40, description="only servers of this site")] = None,
        sort: Annotated[SortKey, Query(description="status sorts by severity: OFFLINE, STALE, WARNING, ONLINE")
                        ] = SortKey.STATUS,
        order: Order = Order.ASC,
    ) -> ServerList:
        """Every enabled server with its live status, reason, heartbeat age, last latency, uptime
        over 24 h / 7 d / 30 d, and maintenance."""
        response.headers.update(NO_STORE)
        rows = store.dashboard_servers(conn, status=status_filter.value if status_filter else None,
                                       name_part=name or None, site=site or None)
        as_of = rows[0].as_of if rows else store.fleet_summary(conn).as_of
        states = store.server_incident_states(conn)
        listed = sort_servers([server_row(r, states.get(r.server_id)) for r in rows], sort, order)
        return ServerList(as_of=as_of, count=len(listed), servers=listed)

    @app.get("/api/servers/{name}", response_model=ServerDetail, tags=["server"],
             responses={404: {"description": "no enabled server of that name"}})
    def server(
        user: User, conn: Conn, response: Response,
        name: Annotated[str, PathParam(max_length=128)],
        hours: Annotated[float, Query(gt=0, le=24 * 30, description="how much history")] = 24,
        limit: Annotated[int, Query(ge=1, le=20000, description="at most this many latency points")] = 3000,
    ) -> ServerDetail:
        """One server: its status, its status changes and its latency over the last ``hours``,
        latency percentiles over the last hour, active alerts and anomalies, maintenance windows."""
        response.headers.update(NO_STORE)
        row = store.dashboard_server(conn, name)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no enabled server named {name!r}")
        since = row.as_of - timedelta(hours=hours)
        return ServerDetail(
            as_of=row.as_of, since=since, server=server_row(row, store.server_incident_states(conn).get(row.server_id)),
            status_changes=[_model(StatusChange, r) for r in store.status_changes(conn, row.server_id, since, limit)],
            latency=[_model(LatencyPoint, r) for r in store.latency_history(conn, row.server_id, since, limit)],
            latency_1h=_model(LatencyPercentiles, store.latency_percentiles_1h(conn, row.server_id)),
            inputs=[_model(ActiveInput, r) for r in store.active_inputs(conn, row.server_id)],
            maintenance=[_model(MaintenanceWindow, r) for r in store.maintenance_windows(conn, row.server_id)],
        )

    @app.get("/api/incidents", response_model=IncidentList, tags=["incidents"])
    def open_incidents(user: User, conn: Conn, response: Response) -> IncidentList:
        """Open shared-cause incidents: what the members share, how many of how many servers,
        since when, who acknowledged; and whether this user may acknowledge."""
        from heartbeat.incidents import describe

        response.headers.update(NO_STORE)
        as_of = store.fleet_summary(conn).as_of
        listed = [Incident(title=describe(r.dimension, r.group_key, r.error_class, r.members, r.population,
                                          r.first_failed_at)[0],
                           **{k: getattr(r, k) for k in Incident.model_fields if k != "title"})
                  for r in store.list_incidents(conn, as_of)]
        return IncidentList(as_of=as_of, may_acknowledge=may_edit(user), incidents=listed)

    @app.post("/api/acknowledgements", response_model=AcknowledgementCreated, status_code=status.HTTP_201_CREATED,
              tags=["incidents"], responses={400: {"description": "unknown or not failing; expiry not in the future"},
                                             403: {"description": "no edit rights on the ssh_heartbeat DAG"}})
    def acknowledge(user: User, conn: Conn, body: AcknowledgementRequest) -> AcknowledgementCreated:
        """Acknowledge a failing server or an open incident as the logged-in user: no reminders or
        escalations while it lasts; it ends when the server recovers (the incident closes) or at
        its expiry. Needs edit rights on the ``ssh_heartbeat`` DAG."""
        require_edit_rights(user)
        as_of = store.fleet_summary(conn).as_of
        expires_at = None
        if body.expires_in_minutes is not None:
            expires_at = as_of + timedelta(minutes=body.expires_in_minutes)
        by = str(user.get_name())
        try:
            ack_id = store.acknowledge(conn, by=by, reason=body.reason, as_of=as_of, server_name=body.server,
                                       incident_id=body.incident_id, expires_at=expires_at)
        except store.AcknowledgementError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        conn.commit()  # the request's connection is closed, not committed, after the response
        return AcknowledgementCreated(id=ack_id, acknowledged_by=by, expires_at=expires_at)

    @app.post("/api/escalations", response_model=EscalationSent, tags=["incidents"],
              responses={400: {"description": "nothing to escalate, or no escalation channel"},
                         403: {"description": "no edit rights on the ssh_heartbeat DAG"}})
    def escalate(user: User, conn: Conn, body: EscalationRequest) -> EscalationSent:
        """Escalate a server's or an incident's outage now to the escalation channels, as the
        logged-in user (once per channel, through the ledger). Needs edit rights on the
        ``ssh_heartbeat`` DAG, and the channels' connections on the api-server."""
        from heartbeat import notify
        from heartbeat.config import settings_from_env

        require_edit_rights(user)
        if (body.server is None) == (body.incident_id is None):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "escalate either a server or an incident")
        settings = settings_from_env().notify
        as_of = store.fleet_summary(conn).as_of
        try:
            counts = notify.escalate_now(conn, notify.configured_channels(settings), settings, as_of,
                                         by=str(user.get_name()), server_name=body.server,
                                         incident_id=body.incident_id)
        except notify.EscalationError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        conn.commit()
        return EscalationSent(**counts)

    return app
