# syntax=docker/dockerfile:1
# tally-server container image.
#
#   docker build -t tally:0.1.0 .
#   docker run -p 50051:50051 -p 9464:9464 -v tally-checkpoints:/var/lib/tally tally:0.1.0
#
# Build stage: the same scripts as CI (.ci/run -> scripts/test.sh):
# scripts/install_deps.sh installs the Debian packages, scripts/build.sh
# builds in Release (tests off: CI runs them). Runtime stage: the binaries,
# the Debian runtime libraries they link and nothing else, as a non-root
# user. tests/deploy_test.py checks this file against the scripts, the
# config's ports and the libraries the binaries need (ldd + dpkg -S).

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install_deps.sh scripts/install_deps.sh
RUN scripts/install_deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/root/.cache/ccache \
    BUILD_DIR=build scripts/build.sh -DTALLY_BUILD_TESTS=OFF \
 && cmake --install build --prefix /opt/tally \
 && mkdir -p /opt/runtime/bin /opt/runtime/lib \
 && cp /opt/tally/bin/* /opt/runtime/bin/ \
 && cp -P /opt/tally/lib/libtally_*.so* /opt/runtime/lib/

FROM debian:bookworm-slim AS runtime
# The Debian packages of every shared library the installed binaries and
# libraries load (libc6 is in every Debian image).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libabsl20220623 libc-ares2 libcivetweb1 libgcc-s1 libgrpc++1.51 libgrpc29 \
      libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprotobuf32 libre2-9 libssl3 \
      libstdc++6 libzstd1 zlib1g \
 && rm -rf /var/lib/apt/lists/*
# Installed by `cmake --install`: tally-server, tally-health, tally-sim,
# tally-bench, tally; libtally_proto.so and libtally_client.so (no RPATH:
# found through ldconfig in /usr/local/lib).
COPY --from=build /opt/runtime/ /usr/local/
RUN ldconfig \
 && groupadd --system --gid 10001 tally \
 && useradd --system --uid 10001 --gid tally --home-dir /var/lib/tally --no-create-home \
      --shell /usr/sbin/nologin tally \
 && mkdir -p /etc/tally /var/lib/tally \
 && chown tally:tally /var/lib/tally
# The config the server reads (mount yours over it); its checkpoint_dir is
# the volume.
COPY deploy/config/tally.textproto /etc/tally/config.textproto
VOLUME ["/var/lib/tally"]
# gRPC (listen_address) and Prometheus /metrics (metrics_port).
EXPOSE 50051 9464
USER 10001:10001
# With TLS on the gRPC port, override it: --health-cmd / compose healthcheck
# with tally-health --tls_ca_file=... (docs/deployment.md).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["tally-health", "--address=127.0.0.1:50051", "--timeout=2s"]
# SIGTERM drains (health NOT_SERVING, uploads finish within
# --shutdown_grace_ms, checkpoint): stop with `docker stop -t 30`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tally-server"]
CMD ["--config=/etc/tally/config.textproto"]
