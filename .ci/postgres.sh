#!/usr/bin/env bash
# Starts a local PostgreSQL server for the test suite (Debian's package, installed when missing),
# creates the role and database `vlmbot` (password `vlmbot`, allowed to create the per-test
# databases), and prints the URL to export as VLMBOT_TEST_POSTGRES_URL on its last line.
#
#   export VLMBOT_TEST_POSTGRES_URL="$(bash .ci/postgres.sh | tail -n 1)"
#
# Must run as root (apt-get, pg_ctlcluster). Everything else it prints goes to stderr.
set -euo pipefail

ROLE=vlmbot
PASSWORD=vlmbot
DATABASE=vlmbot

say() { echo "postgres.sh: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    say "installing PostgreSQL (apt-get install -y postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    say "creating cluster $version/main"
    pg_createcluster "$version" main >&2
fi

# The per-test databases are reached over the Unix socket too: let the role log in there with its
# password (Debian's default is peer authentication, which needs an OS user of the same name).
hba=/etc/postgresql/$version/main/pg_hba.conf
if ! grep -q "^local all $ROLE scram-sha-256" "$hba"; then
    sed -i "1i local all $ROLE scram-sha-256" "$hba"
fi

if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    say "starting cluster $version/main"
    pg_ctlcluster "$version" main start >&2
else
    pg_ctlcluster "$version" main reload >&2
fi

port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 1
done
pg_isready -h 127.0.0.1 -p "$port" >&2

psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -q -p $port -d postgres -tAc \"$1\""; }

if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
    psql_admin "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
else
    psql_admin "ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != "1" ]; then
    psql_admin "CREATE DATABASE $DATABASE OWNER $ROLE"
fi

say "PostgreSQL $version is running on port $port"
echo "postgresql+asyncpg://$ROLE:$PASSWORD@127.0.0.1:$port/$DATABASE"
