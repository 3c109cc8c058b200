#!/bin/sh
# A throw-away PostgreSQL server for tests and benchmarks, on 127.0.0.1 only.
# Usage: scripts/pg-test.sh start DIR    initdb + start; the libpq conninfo goes to DIR/conninfo
#        scripts/pg-test.sh stop DIR     stop the instance started for DIR and delete its data
# The cluster lives in a fresh temporary directory (its path is kept in DIR/datadir) owned by the
# user that runs the server: `postgres` when we are root (initdb and postgres refuse to run as
# root), the calling user otherwise. It listens on a free TCP port of 127.0.0.1 and on no other
# address or Unix socket, with fsync off. `start` first stops an instance a crashed earlier run
# left in the same DIR. `stop` stops exactly that instance, through its postmaster.pid.
# The server binaries are those of the newest /usr/lib/postgresql/<version>/bin (PG_BINDIR wins).
set -eu

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$bindir/pg_ctl" ] || { echo "pg-test.sh: no PostgreSQL server (apt-get install postgresql)" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
  owner=postgres
  as_owner() { runuser -u postgres -- "$@"; }
else
  owner=$(id -un)
  as_owner() { "$@"; }
fi

# Stop the instance recorded in DIR, if any, and delete its data directory.
stop_instance() {
  [ -f "$dir/datadir" ] || return 0
  data=$(cat "$dir/datadir")
  case "$data" in /tmp/ct-pg.*) ;; *) echo "pg-test.sh: refusing odd datadir '$data'" >&2; return 1 ;;
  esac
  if [ -f "$data/db/postmaster.pid" ]; then
    pid=$(head -n 1 "$data/db/postmaster.pid")
    if ! as_owner "$bindir/pg_ctl" stop -D "$data/db" -m fast -w -t 30 >/dev/null 2>&1; then
      # pg_ctl gave up: end that postmaster (and only it) the hard way, if it still runs.
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
         grep -q postgres "/proc/$pid/cmdline" 2>/dev/null; then
        kill -QUIT "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  fi
  rm -rf "$data"
  rm -f "$dir/datadir" "$dir/conninfo" "$dir/port"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
    2>/dev/null || echo $((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    stop_instance
    data=$(mktemp -d /tmp/ct-pg.XXXXXX)
    chown "$owner" "$data"
    echo "$data" >"$dir/datadir"
    as_owner "$bindir/initdb" -D "$data/db" -U postgres -A trust -E UTF8 --locale=C --no-sync \
      >"$data/initdb.log" 2>&1 || { cat "$data/initdb.log" >&2; exit 1; }
    # A port can be taken between our look and the server's bind: try a few.
    tries=0
    while :; do
      tries=$((tries + 1))
      port=$(free_port)
      if as_owner "$bindir/pg_ctl" start -D "$data/db" -l "$data/server.log" -w -t 60 -o \
        "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100" \
        >/dev/null 2>&1; then
        break
      fi
      if [ $tries -ge 5 ]; then
        echo "pg-test.sh: the server did not start:" >&2
        tail -n 20 "$data/server.log" >&2 || true
        exit 1
      fi
    done
    echo "$port" >"$dir/port"
    echo "host=127.0.0.1 port=$port user=postgres dbname=postgres" >"$dir/conninfo"
    ;;
  stop)
    [ -d "$dir" ] || exit 0
    stop_instance
    ;;
  *) usage ;;
esac
