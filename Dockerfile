# syntax=docker/dockerfile:1
# The long-running SQS worker (`firehose-replay worker`) for ECS / Kubernetes; see the README's
# "Worker (ECS / Kubernetes)". Build: docker build -t firehose-replay .
# Configure it with the Lambda function's FIREHOSE_REPLAY_* variables plus FIREHOSE_REPLAY_QUEUE.

# Build with the Rust image's toolchain (the crate's rust-version or newer); rustls only, so no
# OpenSSL headers are needed. The registry and target dir are cache mounts: rebuilds after a
# source change recompile the crate, not its dependencies.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin firehose-replay \
    && cp target/release/firehose-replay /firehose-replay

# A minimal base with glibc, libgcc and CA certificates (the AWS and Google clients verify TLS
# against the system roots), no shell or package manager; the binary alone, as a non-root user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /firehose-replay /usr/local/bin/firehose-replay
# 65532 is the base image's `nonroot` user, numeric so the platform can check it is not root.
USER 65532:65532
# /metrics and /healthz when FIREHOSE_REPLAY_HEALTH_ADDR=0.0.0.0:9090 is set.
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/firehose-replay"]
CMD ["worker"]
