# microseg node image: the agent, the CNI plugin and microsegctl.
# Build stage: the same set-up script as the README, so CI exercises exactly
# these commands (no Docker engine is needed for that).
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN ./scripts/setup.sh \
 && cmake --install build --prefix /out

# Runtime stage: shared libraries only, no compilers.
FROM debian:12-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="microseg" \
      org.opencontainers.image.description="Kubernetes micro-segmentation enforced with eBPF at TC" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libbpf1 libgrpc++1.51 libprotobuf32 libyaml-cpp0.7 \
      libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 \
      libabsl20220623 iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bin/microseg-agent /out/bin/microseg-cni /out/bin/microsegctl /usr/local/bin/
COPY --from=build /out/lib/microseg/ /usr/local/lib/microseg/
# The agent needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (bpffs pins) on the
# host; it runs as root in the DaemonSet. The image itself runs nothing as root
# by default.
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/microseg-agent"]
