# syntax=docker/dockerfile:1.7
# Training and export (`medvision train|evaluate|export`, torchrun DDP on GPU nodes).
# One file, two variants chosen by a build argument:
#   GPU (default): docker build -f deploy/docker/training.Dockerfile -t medvision/training:0.1.0-cu128 .
#   CPU:           docker build -f deploy/docker/training.Dockerfile --build-arg TORCH_VARIANT=cpu \
#                      -t medvision/training:0.1.0-cpu .
# The CUDA variant carries the CUDA runtime inside the torch wheels (nvidia-* wheels); the
# driver comes from the node through the NVIDIA container toolkit, so the base stays a
# plain Python image and both variants share every other layer.
ARG TORCH_VARIANT=cu128

FROM python:3.11.11-slim-bookworm AS python
ARG TORCH_VARIANT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# torch first, from the PyTorch index of the chosen variant (cu128 or cpu), so that the
# extras below find it satisfied and never pull the other build from PyPI.
RUN /opt/venv/bin/pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
    torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY control ./control
COPY training ./training
COPY export ./export
COPY medvision_contract ./medvision_contract
RUN /opt/venv/bin/pip install ".[training,export]"

FROM python:3.11.11-slim-bookworm AS runtime
ARG TORCH_VARIANT
RUN groupadd --system --gid 10001 medvision \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/medvision \
       --no-create-home --shell /usr/sbin/nologin medvision \
    && mkdir -p /var/lib/medvision \
    && chown 10001:10001 /var/lib/medvision
COPY --from=python /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MEDVISION_DATA_DIR=/var/lib/medvision \
    MEDVISION_TORCH_VARIANT=${TORCH_VARIANT} \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /var/lib/medvision
USER 10001:10001
# A training run is a batch process with no port: healthy while its main process lives
# (the orchestrator's restart policy and the job's backoff handle the rest).
HEALTHCHECK --interval=60s --timeout=5s --retries=3 CMD ["sh", "-c", "kill -0 1"]
ENTRYPOINT ["medvision"]
CMD ["--help"]
