#!/bin/bash
# Client abort -> the query stopped, through ct-demo's layered endpoint (make bench-db).
#
#   bench/http/db_abort.sh [--n N] [--conc C] [--abandon-ms MS]
#
# ct-demo runs on 127.0.0.1 with CT_DEMO_TRACE, first on its SQLite file, then on a throw-away
# PostgreSQL server (scripts/pg-test.sh). abort_storm sends N requests for a forecast whose
# query would run for minutes (GET /api/WeatherForecast?days=365&ensembleRuns=5000000), C at a
# time, and closes each connection MS after sending it (FIN, then RST). From the trace: client
# close -> request token fired, and -> handler returned, which is after the statement returned
# (SQLite: interrupted) or the server acknowledged the cancel and the connection was drained
# (PostgreSQL: the backend is idle again). On PostgreSQL the script then counts client
# backends still running a statement (pg_stat_activity, state 'active'): it must be 0.
# Starts everything itself and ends it by pid; every loop is bounded. Prints Markdown.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/build-bench/bench/http
demo=$root/build-bench/apps/demo/ct-demo
n=500
conc=4
abandon=100
while [ $# -gt 0 ]; do
  case "$1" in
    --n) n=$2; shift ;;
    --conc) conc=$2; shift ;;
    --abandon-ms) abandon=$2; shift ;;
    *) echo "usage: $0 [--n N] [--conc C] [--abandon-ms MS]" >&2; exit 2 ;;
  esac
  shift
done
for f in "$demo" "$bin/abort_storm" "$bin/wait_port"; do
  [ -x "$f" ] || { echo "db_abort.sh: $f is missing: build build-bench first (make bench-db)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/ct-dbabort.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  "$root/scripts/pg-test.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

path=${DB_ABORT_PATH:-"/api/WeatherForecast?days=365&ensembleRuns=5000000"}

# run NAME [ct-demo arguments...]: one storm against a fresh ct-demo, then end it.
run() {
  local name=$1 header=$2
  shift 2
  local port
  port=$("$bin/wait_port" --free 21000)
  CT_DEMO_TRACE=$work/$name.trace "$demo" --listen "127.0.0.1:$port" --data-dir "$work/$name-data" \
    "$@" 2>"$work/$name.log" &
  pid=$!
  "$bin/wait_port" "$port" 20000 || { echo "db_abort.sh: $name did not start" >&2; cat "$work/$name.log" >&2; exit 1; }
  "$bin/abort_storm" --server "$name,$port,$pid,$work/$name.trace,ct_http_requests_in_flight" \
    --path "$path" --n "$n" --conc "$conc" --abandon-ms "$abandon" --kinds fin,rst \
    --settle-ms 20000 $header
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
}

echo "## Client abort -> query stopped: GET $path, $n requests, $conc at a time, closed $abandon ms after sending"
echo
run ct-demo-sqlite ""

"$root/scripts/pg-test.sh" start "$work/pg" >/dev/null
read -r host port user dbname < <(sed 's/host=\([^ ]*\) port=\([^ ]*\) user=\([^ ]*\) dbname=\([^ ]*\)/\1 \2 \3 \4/' "$work/pg/conninfo")
run ct-demo-pg --no-header --db "postgresql://$user@$host:$port/$dbname"
active=$(psql -h "$host" -p "$port" -U "$user" -d "$dbname" -Atc \
  "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()")
canceled=$(grep -c "weather forecast: client disconnected" "$work/ct-demo-pg.log" || true)
echo
echo "PostgreSQL after the storm: $canceled queries canceled by a client abort, $active client backends still running a statement (must be 0)."
