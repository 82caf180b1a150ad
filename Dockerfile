# microseg node image: the agent, the CNI plugin and microsegctl, plus the BPF
# object. Not buildable on the development machines (no Docker engine); the
# build stage is scripts/setup.sh, which CI runs on every change, and
# test/deploy/test_dockerfile.py checks the runtime stage against the build.
#
#   docker build -t microseg/microseg:0.1.0 --build-arg VERSION=0.1.0 .

# Build stage: the same set-up script as the README (Debian 12 packages,
# CMake + Ninja into build/). The Kubernetes test tools (helm, kubectl) are
# not needed to build the binaries.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN MICROSEG_SKIP_KUBE_TOOLS=1 ./scripts/setup.sh \
 && cmake --install build --prefix /out

# Runtime stage: the shared libraries the three binaries link against, no
# compilers. curl is for the agent's preStop hook (asks the API server whether
# the release is being uninstalled); mount and stat (from the base image) for
# the chart's bpffs init container.
FROM debian:12-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="microseg" \
      org.opencontainers.image.description="Kubernetes micro-segmentation enforced with eBPF at TC: node agent, chained CNI plugin, microsegctl" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:12-slim"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libbpf1 libgrpc++1.51 libprotobuf32 libyaml-cpp0.7 \
      libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 \
      libabsl20220623 libcurl4 iproute2 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bin/microseg-agent /out/bin/microseg-cni /out/bin/microsegctl /usr/local/bin/
COPY --from=build /out/lib/microseg/ /usr/local/lib/microseg/
# Non-root by default: nothing in the image needs root to start. The
# DaemonSet runs the agent as root with only CAP_BPF, CAP_NET_ADMIN and
# CAP_PERFMON (root for the root-owned host paths: bpffs pins, /run/microseg,
# the CNI directories); see docs/deploy.md.
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/microseg-agent"]
