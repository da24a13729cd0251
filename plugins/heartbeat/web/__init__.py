"""The Fleet heartbeat page: a FastAPI app (a JSON API and a static page, no build step) that the
plugin in :mod:`heartbeat.plugin` mounts on Airflow's api-server under ``/heartbeat``.

Every Airflow process imports plugin files, task runners included, and only the api-server serves
this app: :class:`LazyApp` builds it on the first request, so importing the plugin costs nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LazyApp:
    """An ASGI app that creates :func:`heartbeat.web.app.create_app` when first called."""

    def __init__(self) -> None:
        self._app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    @property
    def app(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        if self._app is None:
            from heartbeat.web.app import create_app

            self._app = create_app()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
