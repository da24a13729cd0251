#!/usr/bin/env bash
# Creates the heartbeat database and its owner role beside Airflow's metadata database.
#
# The postgres image runs the scripts in /docker-entrypoint-initdb.d once, when the data volume
# is empty. Changing HEARTBEAT_DB_* in .env later does not touch an existing volume: rename the
# role or change its password by hand (ALTER ROLE ... PASSWORD ...), or start from a new volume.
# The schema itself is not created here: `heartbeat migrate` (run by airflow-init) owns it.
set -e

: "${HEARTBEAT_DB_NAME:?HEARTBEAT_DB_NAME is not set for the postgres service}"
: "${HEARTBEAT_DB_USER:?HEARTBEAT_DB_USER is not set for the postgres service}"
: "${HEARTBEAT_DB_PASSWORD:?HEARTBEAT_DB_PASSWORD is not set for the postgres service}"

echo "postgres-init: creating role ${HEARTBEAT_DB_USER} and database ${HEARTBEAT_DB_NAME}"
# psql quotes the values itself (:"identifier", :'literal'), so no value can break the SQL.
psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname "${POSTGRES_DB}" \
    --set=db_name="${HEARTBEAT_DB_NAME}" \
    --set=db_user="${HEARTBEAT_DB_USER}" \
    --set=db_password="${HEARTBEAT_DB_PASSWORD}" <<'SQL'
CREATE ROLE :"db_user" LOGIN PASSWORD :'db_password';
CREATE DATABASE :"db_name" OWNER :"db_user";
REVOKE ALL ON DATABASE :"db_name" FROM PUBLIC;
SQL
