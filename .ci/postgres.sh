# Sourced by .ci/run: make sure a PostgreSQL server runs on loopback for the store tests and export
# ARCTUI_TEST_PG_URL. Installs Debian's postgresql when the machine lacks it.
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PG_PORT=${ARCTUI_PG_PORT:-54329}
PG_DATA=${ARCTUI_PG_DATA:-/tmp/arctui-ci-pg}
if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA"
    chown postgres:postgres "$PG_DATA"
    su postgres -s /bin/sh -c "$PG_BIN/initdb -A trust -U arctui -D $PG_DATA" >/dev/null
    su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -s -w -D $PG_DATA -l $PG_DATA/server.log \
        -o '-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_DATA' start"
fi
su postgres -s /bin/sh -c "$PG_BIN/psql -h 127.0.0.1 -p $PG_PORT -U arctui -d postgres -tAc \
    \"SELECT 1 FROM pg_database WHERE datname='arctui_test'\"" | grep -q 1 ||
    su postgres -s /bin/sh -c "$PG_BIN/createdb -h 127.0.0.1 -p $PG_PORT -U arctui arctui_test"
export ARCTUI_TEST_PG_URL="postgresql+psycopg://arctui@127.0.0.1:$PG_PORT/arctui_test"
echo "PostgreSQL for tests at $ARCTUI_TEST_PG_URL"
