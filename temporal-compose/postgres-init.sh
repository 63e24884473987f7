#!/bin/sh
# reflow's own database next to Temporal's (same server, separate database and user). Run by
# the postgres image on the first start of an empty volume. The password comes from
# REFLOW_DB_PASSWORD (reflow.env, scripts/compose-env.sh), handed to psql as a variable that
# psql quotes itself (:'pw'), never spliced into the SQL text.
: "${REFLOW_DB_PASSWORD:?set it in reflow.env (scripts/compose-env.sh)}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    --set=pw="$REFLOW_DB_PASSWORD" <<'SQL'
CREATE USER reflow WITH PASSWORD :'pw';
CREATE DATABASE reflow OWNER reflow;
SQL
