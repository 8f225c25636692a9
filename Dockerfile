# The lifeboat image: a static-enough release binary on Debian slim with CA certificates.
# (Not built by CI here: these machines have no container engine.)
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin lifeboat

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/lifeboat /usr/local/bin/lifeboat
USER 0
ENTRYPOINT ["/usr/local/bin/lifeboat"]
