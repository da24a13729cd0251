# The Airflow image of the production stack (docker-compose.yaml): the stock apache/airflow image
# plus the heartbeat package and the few dependencies it adds, pinned to the tested versions.
#
#   docker compose build            (or: docker build -t airflow-ssh-heartbeat .)
#
# The Python tag is explicit: the bare apache/airflow:3.3.2 tag ships the image's default Python
# (3.12), while this project declares requires-python ">=3.11,<3.12" and requirements.txt is
# compiled for 3.11. Keep AIRFLOW_VERSION equal to the apache-airflow pin in requirements.txt.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION

# requirements.txt is the full freeze the test suite runs on; used as constraints it holds every
# package pip touches here at the tested version, and pinning apache-airflow itself stops pip
# from up- or downgrading Airflow (as Airflow's "extend the image" guide advises).
COPY --chown=airflow:0 requirements.txt /tmp/heartbeat-constraints.txt
RUN pip install --no-cache-dir --constraint /tmp/heartbeat-constraints.txt \
        "apache-airflow==${AIRFLOW_VERSION}" \
        "apache-airflow-providers-ssh==7.0.1" \
        "apache-airflow-providers-postgres==7.1.1" \
        "asyncssh==2.24.1" \
        "psycopg[binary]==3.3.9" \
        "pyyaml==6.0.4"

# The project, laid out as compose mounts it, so the image also runs on its own. Installed in
# editable mode from /opt/airflow: `heartbeat` is on PATH and imports from /opt/airflow/plugins,
# the very folder compose mounts ./plugins over (no second, stale copy in site-packages).
ENV HEARTBEAT_SQL_DIR=/opt/airflow/include/sql
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
RUN pip install --no-cache-dir --no-deps --editable /opt/airflow \
    && heartbeat --help >/dev/null \
    && python -c "import asyncssh, psycopg, yaml, airflow.providers.ssh, airflow.providers.postgres, heartbeat.cli"

USER airflow
