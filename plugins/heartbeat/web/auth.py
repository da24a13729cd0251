"""Airflow authentication for the Fleet heartbeat app.

Airflow mounts plugin apps without any authentication. Here every request is checked exactly as
Airflow's own API checks it: :func:`airflow.api_fastapi.core_api.security.get_user` validates the
JWT from ``Authorization: Bearer`` or from the UI's ``_token`` cookie, with the configured auth
manager; then the user must be allowed to see the Airflow UI (``AccessView.WEBSITE``, which every
role has). Airflow is imported at request time: the api-server has it loaded already.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="AirflowJWT",
    description="An Airflow JWT, e.g. from POST /auth/token; the UI's _token cookie works too.",
)


class AuthError(HTTPException):
    """401 (no or expired login) or 403 (invalid token, or not allowed)."""


async def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None = None) -> Any:
    """The Airflow user of ``request``; :class:`AuthError` when there is no valid login."""
    from airflow.api_fastapi.core_api.security import get_user

    if credentials is None:
        credentials = await bearer_scheme(request)
    try:
        return await get_user(request, None, credentials)
    except HTTPException as exc:
        raise AuthError(exc.status_code, exc.detail, headers={"WWW-Authenticate": "Bearer"}) from None


def authorize(user: Any) -> None:
    """Refuse (403) a user whose role may not see the Airflow UI."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView

    if not get_auth_manager().is_authorized_view(access_view=AccessView.WEBSITE, user=user):
        raise AuthError(status.HTTP_403_FORBIDDEN, "Forbidden: this Airflow user may not see the Airflow UI")


MONITOR_DAG_ID = "ssh_heartbeat"


def may_edit(user: Any) -> bool:
    """Whether ``user`` has edit rights here: the right to edit the monitor's DAG (``ssh_heartbeat``)
    in Airflow, which the auth manager decides (SimpleAuthManager: the ``user`` role and above;
    FAB: "can edit" on that DAG). Viewers may look, not acknowledge."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    return bool(get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=MONITOR_DAG_ID), user=user))


def require_edit_rights(user: Any) -> None:
    """Refuse (403) a user without edit rights on the monitor's DAG."""
    if not may_edit(user):
        raise AuthError(status.HTTP_403_FORBIDDEN,
                        f"Forbidden: acknowledging needs edit rights on the {MONITOR_DAG_ID} DAG; this Airflow "
                        "user may only view")


async def require_airflow_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> Any:
    """FastAPI dependency: the logged-in, authorised Airflow user, or 401/403."""
    user = await authenticate(request, credentials)
    authorize(user)
    return user


def login_url(next_url: str) -> str:
    """Airflow's login page, coming back to ``next_url`` afterwards."""
    from airflow.api_fastapi.app import get_auth_manager

    return str(get_auth_manager().get_url_login(next_url=next_url))
