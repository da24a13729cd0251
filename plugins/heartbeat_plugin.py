"""The Airflow plugin of airflow-ssh-heartbeat: a "Fleet heartbeat" page in the Airflow UI.

The api-server mounts the app (``plugins/heartbeat/web``) under ``/heartbeat``; the nav link opens it
inside the UI at ``/plugin/heartbeat``. The app checks the Airflow login itself: Airflow does not
authenticate plugin apps. Importing this file is cheap (every Airflow process imports plugins):
the app is built on its first request.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from heartbeat.web import LazyApp

app = LazyApp()


class HeartbeatPlugin(AirflowPlugin):
    name = "heartbeat"
    fastapi_apps = [{"app": app, "url_prefix": "/heartbeat", "name": "Fleet heartbeat"}]
    external_views = [
        {"name": "Fleet heartbeat", "href": "heartbeat/", "url_route": "heartbeat", "destination": "nav"},
    ]
