"""The Airflow plugin of airflow-ssh-heartbeat: a "Fleet heartbeat" page in the Airflow UI.

Registered through the ``airflow.plugins`` entry point of the package (``pyproject.toml``): an
Airflow with the package installed loads it with nothing in its plugins folder. The api-server
mounts the app (:mod:`heartbeat.web`) under ``/heartbeat``; the nav link opens it inside the UI at
``/plugin/heartbeat``. The app checks the Airflow login itself: Airflow does not authenticate
plugin apps. Importing this module is cheap (every Airflow process loads plugins): the app is
built on its first request.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from heartbeat.compat import require_supported_airflow
from heartbeat.web import LazyApp

require_supported_airflow()

app = LazyApp()


class HeartbeatPlugin(AirflowPlugin):
    name = "heartbeat"
    fastapi_apps = [{"app": app, "url_prefix": "/heartbeat", "name": "Fleet heartbeat"}]
    external_views = [
        {"name": "Fleet heartbeat", "href": "heartbeat/", "url_route": "heartbeat", "destination": "nav"},
    ]
