# The lifeboat image: the release binary, etcd and etcdutl (for drills and restores), CA
# certificates, running as the unprivileged user 65532 by default.
#
# Not built by CI here (these machines have no container engine): tests/integration/dockerfile.rs
# checks these promises statically. Every FROM is pinned to an exact version; for reproducible
# builds also pin the digests your registry reports (FROM image:tag@sha256:...), e.g. with
#   docker buildx imagetools inspect rust:1.89.0-bookworm
#
#   docker build -t registry.example.com/lifeboat:0.1.0 .
#   (then deploy by digest: deploy/base/kustomization.yaml `images:`)

# etcd's own release image, for the etcd and etcdutl binaries of this exact version. Keep it at
# (or above) the etcd version of the clusters you back up.
FROM gcr.io/etcd-development/etcd:v3.5.21 AS etcd

FROM rust:1.89.0-bookworm AS build
# protoc and its well-known types (google/protobuf/*.proto), which etcd-client's build imports.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin lifeboat

# Debian slim rather than distroless: the pod's init step (deploy/base/deployment.yaml) uses
# /bin/sh and install(1) from this image to copy the etcd client key for the lifeboat user.
FROM debian:12.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=etcd /usr/local/bin/etcd /usr/local/bin/etcd
COPY --from=etcd /usr/local/bin/etcdutl /usr/local/bin/etcdutl
COPY --from=build /src/target/release/lifeboat /usr/local/bin/lifeboat
# Non-root by default (numeric, so runAsNonRoot can verify it); the deploy manifests set the same.
USER 65532:65532
ENV TMPDIR=/tmp
ENTRYPOINT ["/usr/local/bin/lifeboat"]
CMD ["--help"]
