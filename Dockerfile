# syntax=docker/dockerfile:1
#
# stsvend container image: a static musl binary (x86_64 for linux/amd64, aarch64 for
# linux/arm64), built without the `dev` feature, on `scratch`, with only the CA bundle beside it. Runs as the numeric non-root user 65532, writes nothing (works with a
# read-only root filesystem), listens on 8080 (public) and 9090 (admin: /healthz, /readyz,
# /metrics, kill switch).
#
#   docker build -t stsvend .
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg VERSION=0.1.0 -t stsvend .
#   docker run --rm --read-only -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -e STSVEND_ROLE_ARN=acs:ram::1234567890123456:role/sls-web-tracking \
#     -e STSVEND_LOGSTORE=my-project/web-log stsvend
#
# The same x86_64 binary is built and run from an empty root by scripts/container_check.sh;
# scripts/cross_check.sh builds the aarch64 one with Debian's cross gcc, as the build stage does.

# The toolchain of the project (rust-toolchain in CI); the Debian release of the build stage
# only matters for musl-tools and the cross gcc.
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------- build stage
# Runs on the builder's own platform and cross-compiles for the image's: one `docker buildx
# build --platform linux/amd64,linux/arm64` builds both images without emulating the compiler.
FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
ARG BUILDARCH
ARG TARGETARCH
# Empty for the production image; `--build-arg FEATURES=dev` adds `stsvend dev` (the emulators).
ARG FEATURES=""

# ring (rustls' crypto) compiles C and assembly. For the builder's own architecture, musl-gcc
# from musl-tools; for the other one, Debian's cross gcc, which compiles ring and links (the
# Rust musl targets bring their own libc and start files). /cargo-env sets the target, the C
# compiler and the linker for the later steps. The packages follow the base image's Debian
# release and are not version-pinned.
# hadolint ignore=DL3008
RUN set -eu; \
    case "$TARGETARCH" in \
      amd64) target=x86_64-unknown-linux-musl; gnu=x86_64-linux-gnu; pkg=gcc-x86-64-linux-gnu ;; \
      arm64) target=aarch64-unknown-linux-musl; gnu=aarch64-linux-gnu; pkg=gcc-aarch64-linux-gnu ;; \
      *) echo "unsupported TARGETARCH '$TARGETARCH' (amd64 or arm64)" >&2; exit 1 ;; \
    esac; \
    env_name=$(echo "$target" | tr 'a-z-' 'A-Z_'); \
    echo "export CARGO_BUILD_TARGET=$target" > /cargo-env; \
    if [ "$TARGETARCH" = "$BUILDARCH" ]; then \
      pkg=musl-tools; \
    else \
      echo "export CC_$(echo "$target" | tr - _)=$gnu-gcc CARGO_TARGET_${env_name}_LINKER=$gnu-gcc" >> /cargo-env; \
    fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends "$pkg"; \
    rm -rf /var/lib/apt/lists/*; \
    rustup target add "$target"

WORKDIR /src
# Strip symbols from the release binary (x86_64 production build: 15.3 MB -> 12.3 MB) without
# touching Cargo.toml.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never

# Dependencies first, in their own layer: built against a placeholder crate, so editing src/
# does not rebuild them. Only a change to Cargo.toml or Cargo.lock does. The production build:
# --no-default-features leaves out `stsvend dev` (the emulators and their public dev keys).
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && . /cargo-env \
 && cargo build --release --locked --no-default-features --features "$FEATURES" \
 && rm -rf src

# The real sources. touch: COPY keeps the files' old modification times, which cargo could
# take for "not changed since the placeholder build".
COPY src ./src
# The commit, for stsvend_build_info: build.rs cannot ask git here (.git is .dockerignore'd)
# and ignores anything but hex digits, so "unknown" leaves the metric's revision unknown.
# Declared here, not above, so a new commit does not rebuild the dependencies' layer.
ARG REVISION=unknown
RUN touch src/main.rs src/lib.rs \
 && . /cargo-env \
 && STSVEND_BUILD_REVISION="$REVISION" cargo build --release --locked --no-default-features --features "$FEATURES" --bin stsvend \
 && cp "target/$CARGO_BUILD_TARGET/release/stsvend" /stsvend \
 && if [ "$TARGETARCH" = "$BUILDARCH" ]; then /stsvend --version; fi

# ---------------------------------------------------------------------------- final stage
FROM scratch

# Set by the build (CI passes the repository URL, the commit and the release):
#   --build-arg SOURCE=https://… --build-arg REVISION=$(git rev-parse HEAD) --build-arg VERSION=0.1.0
ARG SOURCE=""
ARG REVISION=unknown
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="stsvend" \
      org.opencontainers.image.description="Vends short-lived, least-privilege Alibaba Cloud STS credentials to web and mini-program clients of Simple Log Service" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
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
