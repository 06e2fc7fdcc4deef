# syntax=docker/dockerfile:1
# tingxie images. One binary serves CPU and GPU nodes; two images so that CPU nodes do not pull
# the CUDA libraries. The model is not in the image: it is pulled lazily into the node-local
# cache (TINGXIE_MODEL, TINGXIE_CACHE_DIR). The *-model targets bake one in for air-gapped
# clusters. Silero VAD's weights (1.2 MB) are in every image (TINGXIE_VAD_MODEL).
#
#   docker build --target cpu        -t tingxie:cpu .      (make image)
#   docker build --target cuda       -t tingxie:cuda .     (make image-cuda)
#   docker build --target cpu-model  -t tingxie:cpu-tiny-en .   (needs `make models` first)
#   docker build --target cuda-model -t tingxie:cuda-tiny-en .
#
# The CUDA build links nothing from CUDA: burn's CUDA backend loads libcuda (the driver, mounted
# by the NVIDIA container runtime) and NVRTC (from the CUDA runtime image) when a CUDA device is
# chosen. Its driver API bindings are pinned to CUDA 12.4 (.cargo/config.toml), hence the 12.4
# runtime image: every driver >= 550 runs it.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04
ARG BUILD_IMAGE_CUDA=ubuntu:22.04

# ---- build: CPU-only binary (no CUDA feature), Debian 12 -------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build-cpu
# cmake builds the bundled libopus; pkg-config and zlib for flate2's zlib backend.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config zlib1g-dev g++ make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY function function
COPY model-cache model-cache
COPY loadtest loadtest
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist --no-default-features --bin tingxie \
 && install -D -m 0755 target/dist/tingxie /out/tingxie

# ---- build: CUDA-capable binary, on the CUDA runtime image's distribution (same glibc) --------
FROM ${BUILD_IMAGE_CUDA} AS build-cuda
ARG RUST_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl cmake pkg-config zlib1g-dev \
      g++ make \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain "${RUST_VERSION}"
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY function function
COPY model-cache model-cache
COPY loadtest loadtest
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist --bin tingxie \
 && install -D -m 0755 target/dist/tingxie /out/tingxie

# ---- Silero VAD v6 (vad_filter, batches): 1.2 MB, in every image -------------------------------
FROM python:3.11-slim-bookworm AS vad
COPY scripts/fetch-vad.sh /fetch-vad.sh
RUN bash /fetch-vad.sh /out/silero-vad

# ---- runtime: CUDA ---------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS cuda
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    TINGXIE_DEVICE=cuda \
    TINGXIE_CACHE_DIR=/var/cache/tingxie \
    TINGXIE_HISTORY=/var/cache/tingxie/history \
    PORT=8080
# uid/gid 65532, the usual non-root user of distroless images; the manifests run as it.
RUN groupadd --system --gid 65532 tingxie \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --shell /usr/sbin/nologin tingxie \
 && mkdir -p /var/cache/tingxie \
 && chown 65532:65532 /var/cache/tingxie
COPY --from=build-cuda /out/tingxie /usr/local/bin/tingxie
COPY --from=vad /out/silero-vad /opt/tingxie/silero-vad
ENV TINGXIE_VAD_MODEL=/opt/tingxie/silero-vad
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tingxie"]
CMD ["serve"]

# ---- runtime: CUDA with the model baked in (air-gapped clusters) ------------------------------
FROM cuda AS cuda-model
ARG MODEL_DIR=models/whisper-tiny-en
COPY --chown=0:0 ${MODEL_DIR} /opt/tingxie/model
ENV TINGXIE_MODEL=/opt/tingxie/model

# ---- runtime: CPU ----------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS cpu
# ca-certificates for HTTPS to object stores; zlib1g and libgcc are in the base already.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 tingxie \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --shell /usr/sbin/nologin tingxie \
 && mkdir -p /var/cache/tingxie \
 && chown 65532:65532 /var/cache/tingxie
ENV TINGXIE_DEVICE=cpu \
    TINGXIE_CACHE_DIR=/var/cache/tingxie \
    TINGXIE_HISTORY=/var/cache/tingxie/history \
    PORT=8080
COPY --from=build-cpu /out/tingxie /usr/local/bin/tingxie
COPY --from=vad /out/silero-vad /opt/tingxie/silero-vad
ENV TINGXIE_VAD_MODEL=/opt/tingxie/silero-vad
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tingxie"]
CMD ["serve"]

# ---- runtime: CPU with the model baked in -----------------------------------------------------
FROM cpu AS cpu-model
ARG MODEL_DIR=models/whisper-tiny-en
COPY --chown=0:0 ${MODEL_DIR} /opt/tingxie/model
ENV TINGXIE_MODEL=/opt/tingxie/model
