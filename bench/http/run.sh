#!/bin/bash
# ct-http side by side with nginx and Go's net/http, on 127.0.0.1 (make bench-http).
#
#   bench/http/run.sh [--quick] [--only storm|throughput|scale] [--rounds N] [--keep]
#
# Needs build-bench/ built (make bench-http does it) and the Debian packages of the httpbench
# group (scripts/deps.sh httpbench): golang-go, nginx-light, wrk. Starts every server itself, as
# a child of this script, on a free loopback port, waits for it by polling connect() (bounded),
# and ends each by its pid when its part is done (and on any exit). Every load is bounded in
# count and time and stops by itself. Prints Markdown; a copy goes to build-bench/bench-http.md.
#
#   1. abort storm (abort_storm): ct-demo and the Go server, io and cpu handlers, FIN and RST;
#   2. throughput (wrk -t1 -c64 -d10s --latency): GET /healthz on ct-demo, nginx (return 200)
#      and Go, with 0, 1 000 and 10 000 extra idle connections held by idle_conns;
#   3. scale (scale): 10 000 slow requests held on ct-demo, then on Go.
#
# The load generators share the machine's cores with the servers: figures are for that setup.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/build-bench/bench/http
demo=$root/build-bench/apps/demo/ct-demo
out=$root/build-bench/bench-http.md
quick=0
only=""
rounds=3
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --only) only=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --keep) keep=1 ;;
    *) echo "usage: $0 [--quick] [--only storm|throughput|scale] [--rounds N] [--keep]" >&2; exit 2 ;;
  esac
  shift
done
duration=10s
idle_counts="1000 10000"
storm_n=200
scale_n=10000
if [ "$quick" = 1 ]; then
  duration=3s; rounds=1; idle_counts="1000"; storm_n=100; scale_n=2000
fi

for f in "$demo" "$bin/abort_storm" "$bin/scale" "$bin/idle_conns" "$bin/wait_port"; do
  [ -x "$f" ] || { echo "run.sh: $f is missing: build build-bench first (make bench-http)" >&2; exit 1; }
done
for f in go /usr/sbin/nginx wrk; do
  command -v "$f" >/dev/null || { echo "run.sh: $f is missing: scripts/deps.sh httpbench" >&2; exit 1; }
done

work=$(mktemp -d /tmp/ct-httpbench.XXXXXX)
declare -A pids=() # name -> pid, for every server this script started and has not ended yet

# End a server this script started: SIGTERM, then (after 10 s of polling) SIGKILL, by its pid.
stop_server() {
  local name=$1 pid=${pids[$1]:-}
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "pids[$name]"
}

cleanup() {
  local name
  for name in "${!pids[@]}"; do stop_server "$name"; done
  if [ "$keep" = 1 ]; then echo "run.sh: logs and traces kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Servers need many descriptors: 10 000 idle connections plus the load. Raise the hard limit
# where allowed (root with CAP_SYS_RESOURCE), and the soft one to it (ct-demo and Go do that
# themselves too; nginx is told worker_rlimit_nofile).
ulimit -Hn 65536 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)"
nofile=$(ulimit -Hn)
if [ "$nofile" -lt 10500 ]; then
  echo "run.sh: RLIMIT_NOFILE is $nofile: 10 000 connections need more" >&2
fi

next_port=20000
free_port() {
  local p
  p=$("$bin/wait_port" --free "$next_port")
  next_port=$((p + 1))
  echo "$p"
}

# start_server NAME KIND PORT [TRACE]: KIND is ct, go, go-clock (its CPU steps spin on the
# thread's CPU clock, locked to a thread, as ct-demo's do) or nginx.
start_server() {
  local name=$1 kind=$2 port=$3 trace=${4:-}
  case "$kind" in
    ct)
      mkdir -p "$work/$name-data"
      CT_DEMO_TRACE=$trace "$demo" --listen "127.0.0.1:$port" --data-dir "$work/$name-data" \
        --drain-ms 0 2>"$work/$name.log" &
      ;;
    go | go-clock)
      local step=loop
      [ "$kind" = go-clock ] && step=clock
      GO_TRACE=$trace "$bin/go-server" -listen "127.0.0.1:$port" -cpu-step "$step" \
        2>"$work/$name.log" &
      ;;
    nginx)
      local d=$work/$name
      mkdir -p "$d/tmp"
      chmod 755 "$work" "$d" "$d/tmp"
      cat >"$d/nginx.conf" <<EOF
# A hello world for the throughput comparison: two workers (one per core, as ct-demo has two
# I/O threads and Go two Ps), an access log line per request like ct-demo's, keep-alive without
# a request cap (ct and Go have none).
daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile $nofile;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 32768; }
http {
  access_log $d/access.log;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
  server {
    listen 127.0.0.1:$port;
    location = /healthz { default_type application/json; return 200 '{"status":"ok"}'; }
  }
}
EOF
      /usr/sbin/nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" 2>"$work/$name.log" &
      ;;
  esac
  pids[$name]=$!
  if ! "$bin/wait_port" "$port" 10000 || ! kill -0 "${pids[$name]}" 2>/dev/null; then
    echo "run.sh: $name did not start on 127.0.0.1:$port; its log:" >&2
    cat "$work/$name.log" >&2
    exit 1
  fi
}

build_go() {
  # Standard library only: no modules, no proxy, a throw-away GOPATH and cache.
  local g=$work/go
  mkdir -p "$g"
  GOPATH=$g/path GOCACHE=$g/cache GO111MODULE=off GOFLAGS='' GOPROXY=off \
    go build -o "$bin/go-server" "$root/bench/http/go/server.go"
}

say() { echo "$@" | tee -a "$out"; }
run() { "$@" | tee -a "$out"; }

machine() {
  say "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(uname -sr), load before: $(cut -d' ' -f1-3 /proc/loadavg)."
  say "Peers: $(go version | cut -d' ' -f3) net/http (GOMAXPROCS $(nproc)), $(/usr/sbin/nginx -v 2>&1 | cut -d' ' -f3) (2 workers), wrk from Debian; ct at $(git -C "$root" rev-parse --short HEAD)."
  say "The load generators run on the same $(nproc) CPUs as the servers."
  say ""
}

# ---- 1. abort storm ------------------------------------------------------------------------------

storm() {
  local pc pg pl
  pc=$(free_port); start_server ct-storm ct "$pc" "$work/ct-storm.trace"
  pg=$(free_port); start_server go-storm go "$pg" "$work/go-storm.trace"
  pl=$(free_port); start_server go-lock-storm go-clock "$pl" "$work/go-lock-storm.trace"
  local servers=(--server "ct,$pc,${pids[ct-storm]},$work/ct-storm.trace,ct_http_requests_in_flight"
                 --server "go,$pg,${pids[go-storm]},$work/go-storm.trace,go_http_requests_in_flight"
                 --server "go-locked,$pl,${pids[go-lock-storm]},$work/go-lock-storm.trace,go_http_requests_in_flight")
  say "## Abort storm"
  say ""
  say "\`abort_storm ${servers[*]} --n $storm_n --conc 50\` (ports and pids of this run)"
  say ""
  say "go: \`go-server -cpu-step loop\` (a CPU step is calibrated work); go-locked: \`-cpu-step clock\`"
  say "(locked to its thread, spinning on its CPU clock, as ct-demo does). Per-request lines:"
  say "\`--dump\` files in the work directory (run with --keep)."
  say ""
  run timeout 600 "$bin/abort_storm" "${servers[@]}" --n "$storm_n" --conc 50 --id-base 1000000 \
    --dump "$work/storm-burst.txt"
  say ""
  say "Staggered: \`abort_storm ... --n $storm_n --conc 50 --stagger\`"
  say ""
  run timeout 600 "$bin/abort_storm" "${servers[@]}" --n "$storm_n" --conc 50 --stagger \
    --id-base 2000000 --dump "$work/storm-stagger.txt"
  say ""
  say "One CPU-bound handler per core: \`abort_storm ... --n 100 --conc 2 --modes cpu\`"
  say ""
  run timeout 600 "$bin/abort_storm" "${servers[@]}" --n 100 --conc 2 --modes cpu \
    --id-base 3000000 --dump "$work/storm-cpu2.txt"
  say ""
  say "One request at a time (the floor): \`abort_storm ... --n 100 --conc 1 --modes io\`"
  say ""
  run timeout 600 "$bin/abort_storm" "${servers[@]}" --n 100 --conc 1 --modes io \
    --id-base 4000000 --dump "$work/storm-floor.txt"
  say ""
  stop_server ct-storm
  stop_server go-storm
  stop_server go-lock-storm
}

# ---- 2. throughput -------------------------------------------------------------------------------

# wrk_once PORT [PATH] -> "rps p50_ms p99_ms errors non2xx"
wrk_once() {
  timeout 120 wrk -t1 -c64 -d"$duration" --latency "http://127.0.0.1:$1${2:-/healthz}" | awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Socket errors:/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
    /Non-2xx/ { non2xx = $NF }
    END { printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, err + 0, non2xx + 0 }'
}

# with_idle PORT COUNT MODE CMD...: run CMD while idle_conns holds COUNT connections to PORT
# (MODE "ka": each made one request first; "none": sent nothing). Prints CMD's output, then
# "idle: <ready line> / <stopped line>" on stderr-free stdout line 2.
with_idle() {
  local port=$1 count=$2 mode=$3
  shift 3
  if [ "$count" = 0 ]; then
    "$@"
    echo "idle: -"
    return
  fi
  local req=()
  [ "$mode" = ka ] && req=(--request /healthz)
  coproc IDLE { exec "$bin/idle_conns" --port "$port" --count "$count" "${req[@]}" --max-seconds 600; }
  local ipid=$IDLE_PID ready="" stopped=""
  read -r -t 300 -u "${IDLE[0]}" ready || ready="no answer"
  "$@"
  echo stop >&"${IDLE[1]}" || true
  read -r -t 60 -u "${IDLE[0]}" stopped || stopped="no answer"
  wait "$ipid" 2>/dev/null || true
  echo "idle: $ready / $stopped"
}

throughput() {
  local pc pn pg
  pc=$(free_port); start_server ct-tp ct "$pc"
  pn=$(free_port); start_server nginx-tp nginx "$pn"
  pg=$(free_port); start_server go-tp go "$pg"
  # ct: /healthz, an on_io_thread route; ct-pool: /work?ms=0, the same answer from a pool thread.
  declare -A port=([ct]=$pc [ct-pool]=$pc [nginx]=$pn [go]=$pg)
  declare -A path=([ct]=/healthz [ct-pool]="/work?ms=0" [nginx]=/healthz [go]=/healthz)
  local raw=$work/throughput.txt
  : >"$raw"
  say "## Throughput"
  say ""
  say "\`wrk -t1 -c64 -d$duration --latency http://127.0.0.1:PORT/healthz\`, each server in turn, $rounds round(s);"
  say "ct-demo's \`/healthz\` is an \`on_io_thread\` route; \"ct pool\" is \`/work?ms=0\` on the same server, a"
  say "handler on a pool thread (two hand-offs per request), with the same kind of answer."
  say "idle connections held by \`idle_conns --port PORT --count K [--request /healthz]\`."
  say ""
  local conds="0:ka"
  for k in $idle_counts; do conds="$conds $k:ka $k:none"; done
  for r in $(seq "$rounds"); do
    for cond in $conds; do
      for s in ct ct-pool nginx go; do
        local k=${cond%%:*} m=${cond##*:} res
        res=$(with_idle "${port[$s]}" "$k" "$m" wrk_once "${port[$s]}" "${path[$s]}")
        echo "$r $cond $s $(echo "$res" | head -1) | $(echo "$res" | tail -1)" | tee -a "$raw" >&2
      done
    done
  done
  say ""
  say "Median of the rounds (requests/s; latency from wrk's distribution, ms)."
  say ""
  say "| extra idle connections | ct-demo req/s | ct pool req/s | nginx req/s | Go req/s | ct/nginx | ct/Go | ct pool/Go | ct p50 / p99 | ct pool p50 / p99 | nginx p50 / p99 | Go p50 / p99 | errors ct / ct pool / nginx / Go |"
  say "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|"
  for cond in $conds; do
    awk -v cond="$cond" '
      function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      $2 == cond { n[$3]++; rps[$3, n[$3]] = $4; p50[$3, n[$3]] = $5; p99[$3, n[$3]] = $6; err[$3] += $7 + $8 }
      END {
        split("ct ct-pool nginx go", names, " ")
        for (i = 1; i <= 4; i++) {
          s = names[i]
          for (j = 1; j <= n[s]; j++) { a[j] = rps[s, j]; b[j] = p50[s, j]; c[j] = p99[s, j] }
          R[s] = median(a, n[s]); P50[s] = median(b, n[s]); P99[s] = median(c, n[s])
        }
        split(cond, kc, ":")
        label = kc[1] == 0 ? "0" : kc[1] (kc[2] == "ka" ? " keep-alive (one request each, then idle)" : " that sent nothing")
        printf "| %s | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.3f / %.3f | %.3f / %.3f | %.3f / %.3f | %.3f / %.3f | %d / %d / %d / %d |\n",
          label, R["ct"], R["ct-pool"], R["nginx"], R["go"], R["nginx"] ? R["ct"] / R["nginx"] : 0,
          R["go"] ? R["ct"] / R["go"] : 0, R["go"] ? R["ct-pool"] / R["go"] : 0,
          P50["ct"], P99["ct"], P50["ct-pool"], P99["ct-pool"], P50["nginx"], P99["nginx"], P50["go"], P99["go"],
          err["ct"], err["ct-pool"], err["nginx"], err["go"]
      }' "$raw" | tee -a "$out"
  done
  say ""
  say "Every run (round, condition, server, req/s, p50, p99, socket errors, non-2xx | idle_conns):"
  say ""
  say '```'
  tee -a "$out" <"$raw"
  say '```'
  say ""
  stop_server ct-tp
  stop_server nginx-tp
  stop_server go-tp
}

# ---- 3. scale ------------------------------------------------------------------------------------

scale() {
  local pc pg pn
  pc=$(free_port); start_server ct-scale ct "$pc" "$work/ct-scale.trace"
  pg=$(free_port); start_server go-scale go "$pg" "$work/go-scale.trace"
  # Go's trace costs a goroutine per request (the watcher); without it, its memory alone.
  pn=$(free_port); start_server go-notrace-scale go "$pn"
  local servers=(--server "ct,$pc,${pids[ct-scale]},$work/ct-scale.trace,ct_http_requests_in_flight"
                 --server "go,$pg,${pids[go-scale]},$work/go-scale.trace,go_http_requests_in_flight"
                 --server "go-untraced,$pn,${pids[go-notrace-scale]},/dev/null,go_http_requests_in_flight")
  say "## Scale"
  say ""
  say "\`scale ${servers[*]} --count $scale_n --abort 500 --shut 500\`"
  say ""
  timeout 600 "$bin/scale" "${servers[@]}" --count "$scale_n" --abort 500 --shut 500 \
    2>"$work/scale.err" | tee -a "$out"
  say ""
  say '```'
  tee -a "$out" <"$work/scale.err"
  say '```'
  say ""
  stop_server ct-scale
  stop_server go-scale
  stop_server go-notrace-scale
}

: >"$out"
build_go
say "# ct-http benchmarks, $(date -u +%Y-%m-%dT%H:%MZ)"
say ""
machine
case "$only" in
  "") storm; throughput; scale ;;
  storm) storm ;;
  throughput) throughput ;;
  scale) scale ;;
  *) echo "run.sh: --only storm, throughput or scale" >&2; exit 2 ;;
esac
echo "run.sh: results in $out" >&2
