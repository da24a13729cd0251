# The Airflow image of the production stack (docker-compose.yaml): the stock apache/airflow image
# plus the airflow-ssh-heartbeat wheel, installed the way the README tells any deployment to add it.
#
#   docker compose build            (or: docker build -t airflow-ssh-heartbeat .)
#
# The Python tag is explicit: the bare apache/airflow:3.3.2 tag ships the image's default Python
# (3.12), while this project declares requires-python ">=3.11,<3.12". Keep AIRFLOW_VERSION equal
# to the apache-airflow pin in requirements.txt.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11

# --- stage 1: the wheel, built from the product's sources only (the same image has pip) ------------
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS wheel
USER root
WORKDIR /tmp/heartbeat-src
# plugins/heartbeat/sqlfiles is a symbolic link to include/sql: both are copied, the build packs the files.
COPY pyproject.toml README.md ./
COPY plugins/heartbeat/ plugins/heartbeat/
COPY include/sql/ include/sql/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/heartbeat-dist . \
    && python -c "import sys, zipfile, glob; [w] = glob.glob('/tmp/heartbeat-dist/*.whl'); \
names = zipfile.ZipFile(w).namelist(); sys.exit(0 if any(n.startswith('heartbeat/sqlfiles/migrations/') for n in names) else 'no SQL in the wheel')"

# --- stage 2: the image (as the stock image, pip installs as the airflow user) -----------------------
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION

# Airflow pinned on the same line, as Airflow's guide for adding packages says: pip then neither
# up- nor downgrades it, and the image's own provider versions satisfy the package's ranges.
COPY --from=wheel /tmp/heartbeat-dist/ /tmp/heartbeat-dist/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /tmp/heartbeat-dist/airflow_ssh_heartbeat-*.whl \
    && heartbeat --help >/dev/null \
    && python -c "import heartbeat.plugin, heartbeat.dags, heartbeat.sql as s; assert s.migrations()"

# The two-line DAG files (compose mounts ./dags over them, so edits need no rebuild).
COPY --chown=airflow:0 dags/ /opt/airflow/dags/

USER airflow
