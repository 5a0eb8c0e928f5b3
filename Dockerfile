# syntax=docker/dockerfile:1
#
# stsvend container image: a static x86_64-unknown-linux-musl binary on `scratch`, with only the
# CA bundle beside it. Runs as the numeric non-root user 65532, writes nothing (works with a
# read-only root filesystem), listens on 8080 (public) and 9090 (admin: /healthz, /readyz,
# /metrics, kill switch).
#
#   docker build -t stsvend .
#   docker run --rm --read-only -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -e STSVEND_ROLE_ARN=acs:ram::1234567890123456:role/sls-web-tracking \
#     -e STSVEND_LOGSTORE=my-project/web-log stsvend
#
# The same binary is built and run from an empty root by scripts/container_check.sh.

# The toolchain of the project (rust-toolchain in CI); the Debian release of the build stage
# only matters for musl-tools.
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------- build stage
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
ARG TARGET=x86_64-unknown-linux-musl

# ring (rustls' crypto) compiles C and assembly: musl-gcc from musl-tools for the musl target.
# musl-tools is not version-pinned: it follows the base image's Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"

WORKDIR /src
# Strip symbols from the release binary (about 13 MB -> 10.5 MB) without touching Cargo.toml.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never

# Dependencies first, in their own layer: built against a placeholder crate, so editing src/
# does not rebuild them. Only a change to Cargo.toml or Cargo.lock does.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" \
 && rm -rf src

# The real sources. touch: COPY keeps the files' old modification times, which cargo could
# take for "not changed since the placeholder build".
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" --bin stsvend \
 && cp "target/${TARGET}/release/stsvend" /stsvend \
 && /stsvend --version

# ---------------------------------------------------------------------------- final stage
FROM scratch

LABEL org.opencontainers.image.title="stsvend" \
      org.opencontainers.image.description="Vends short-lived, least-privilege Alibaba Cloud STS credentials to web and mini-program clients of Simple Log Service" \
      org.opencontainers.image.licenses="Apache-2.0"

# rustls-platform-verifier reads the system trust store through rustls-native-certs, which
# honours SSL_CERT_FILE.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /stsvend /stsvend

ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    STSVEND_LISTEN=0.0.0.0:8080 \
    STSVEND_ADMIN_LISTEN=0.0.0.0:9090 \
    STSVEND_LOG_FORMAT=json

# Numeric, so Kubernetes' runAsNonRoot can verify it without an /etc/passwd.
USER 65532:65532
EXPOSE 8080 9090

# Exec form: there is no shell in the image. Probes the admin listener's /healthz
# (http://127.0.0.1:9090/healthz by default). Kubernetes ignores HEALTHCHECK and uses the
# Deployment's probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/stsvend", "healthcheck"]

ENTRYPOINT ["/stsvend"]
CMD ["serve"]
