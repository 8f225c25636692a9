#!/usr/bin/env bash
# Benchmark: exports N_OBJECTS (default 100000) objects from the test Kubernetes API server
# (examples/kube_api_server, in-memory, on 127.0.0.1) into a file:// store with Secrets encrypted,
# and reports objects/s, wall time and lifeboat's peak RSS (GNU time).
# Usage: scripts/bench-resource-export.sh [N_OBJECTS]
set -euo pipefail
cd "$(dirname "$0")/.."
N_OBJECTS="${1:-100000}"
SEED=$(( N_OBJECTS / 10 ))   # the standard seed makes about ten objects per unit
[ -x /usr/bin/time ] || { echo "bench: needs GNU time (apt-get install time)"; exit 1; }

cargo build --release --quiet --bin lifeboat --example kube_api_server
LIFEBOAT="$PWD/target/release/lifeboat"
WORK="$(mktemp -d /tmp/lifeboat-bench-export.XXXXXX)"
mkfifo "$WORK/stdin"
"$PWD/target/release/examples/kube_api_server" "$SEED" <"$WORK/stdin" >"$WORK/server" 2>"$WORK/server.log" &
SERVER_PID=$!
exec 3>"$WORK/stdin"   # keeps the server running until this script exits
cleanup() { exec 3>&-; kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 600); do [ -s "$WORK/server" ] && break; sleep 0.2; done
read -r URL KUBECONFIG_PATH <"$WORK/server"
cat "$WORK/server.log"

"$LIFEBOAT" keygen --output-file "$WORK/key.txt" >"$WORK/recipient"
cat >"$WORK/lifeboat.yaml" <<YAML
cluster: bench
storage:
  url: file://$WORK/store
encryption:
  recipients: ["$(cat "$WORK/recipient")"]
kubernetes:
  kubeconfig: $KUBECONFIG_PATH
resources:
  page_size: 500
YAML
/usr/bin/time -f '%M %e' -o "$WORK/time" "$LIFEBOAT" --config "$WORK/lifeboat.yaml" backup resources >"$WORK/out" 2>"$WORK/err" \
  || { cat "$WORK/err"; exit 1; }
read -r RSS_KB SECS <"$WORK/time"
OBJECTS=$(grep -o 'objects=[0-9]*' "$WORK/err" | head -1 | cut -d= -f2)
STORED=$(grep -o 'stored_bytes=[0-9]*' "$WORK/err" | head -1 | cut -d= -f2)
python3 - "$OBJECTS" "$SECS" "$RSS_KB" "$STORED" "$URL" <<'PY'
import sys
objects, secs, rss, stored, url = sys.argv[1:]
objects = int(objects); secs = float(secs)
print(f"\nexported {objects} objects from {url} in {secs:.2f}s: {objects/secs:,.0f} objects/s; "
      f"stored {int(stored)/2**20:.1f} MiB; lifeboat peak RSS {int(rss)/1024:.1f} MiB")
PY
