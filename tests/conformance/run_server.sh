#!/bin/sh
# The conformance corpus against a real ct-demo over loopback, with the team's runner: every
# non-contested case must pass, and the server must still be alive at the end.
#   run_server.sh CT_DEMO_BINARY
set -eu
demo=$1
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
"$demo" --listen 127.0.0.1:0 --data-dir "$dir/data" 2>"$dir/log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=
for _ in $(seq 1 200); do # wait for the port, at most 20 s
  port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$dir/log")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "ct-demo did not start"; cat "$dir/log"; exit 1; }
python3 "$here/conformance.py" --host 127.0.0.1 --port "$port" --add-host --path-override /healthz \
  --corpus "$here/corpus.json" --corpus "$here/corpus_supplementary.json" \
  --json "$dir/result.json" >"$dir/out" 2>&1 || true
tail -1 "$dir/out"
kill -0 "$pid" || { echo "ct-demo died during the corpus"; tail -20 "$dir/log"; exit 1; }
python3 - "$dir/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = [x for x in r["results"] if not x["pass"] and not x["contested"]]
contested = [x["id"] for x in r["results"] if not x["pass"] and x["contested"]]
print("contested cases decided differently from llhttp (see docs/http-parser.md): %d" % len(contested))
for x in bad:
    print("FAIL %s: expect %s, got %s (%s)" % (x["id"], x["expect"], x["observed"], x["why"]))
sys.exit(1 if bad else 0)
PY
