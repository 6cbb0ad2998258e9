#!/bin/sh
# Temporal's two databases and their schemas (as Temporal's own compose setup-postgres.sh
# does), then graphrunner's state database. Every step is idempotent: `create` accepts an
# existing database, `setup-schema -v 0.0` leaves a newer schema alone and `update-schema`
# applies only the versions still missing, so this runs on every `docker compose up` and
# upgrades the schemas when TEMPORAL_ADMINTOOLS_VERSION moves on.
set -eu
: "${POSTGRES_SEEDS:?set POSTGRES_SEEDS}" "${POSTGRES_USER:?set POSTGRES_USER}"
: "${SQL_PASSWORD:?set SQL_PASSWORD}" "${STATE_DB_NAME:?set STATE_DB_NAME}"
PORT=${DB_PORT:-5432}
SCHEMA=/etc/temporal/schema/postgresql/v12

sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$PORT" -u "$POSTGRES_USER" "$@"
}

sql --db temporal create
sql --db temporal setup-schema -v 0.0
sql --db temporal update-schema -d "$SCHEMA/temporal/versioned"

sql --db temporal_visibility create
sql --db temporal_visibility setup-schema -v 0.0
sql --db temporal_visibility update-schema -d "$SCHEMA/visibility/versioned"

# Empty: the graphrunner-db service creates or migrates its tables (`graphrunner db upgrade`).
sql --db "$STATE_DB_NAME" create
echo "PostgreSQL ready: temporal, temporal_visibility and $STATE_DB_NAME"
