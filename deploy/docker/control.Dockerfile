# syntax=docker/dockerfile:1.7
# The control plane: API + web workstation (`medvision serve`), the job worker
# (`medvision worker`) and the DICOM listener (`medvision dicom listen`) share this image;
# the command chooses the role. It is the base distribution only (`pip install .`, no
# extras): no torch, no onnxruntime — tests/deploy/test_images.py resolves its dependency set
# and fails if torch appears. Build from the repository root:
#   docker build -f deploy/docker/control.Dockerfile -t medvision/control:0.1.0 .

# --- 1. the radiologist workstation (React + Vite), built once, copied as static files ----
FROM node:20.18.1-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/index.html web/vite.config.ts web/tsconfig.json ./
COPY web/public ./public
COPY web/src ./src
RUN npm run build

# --- 2. the Python distribution in a virtual environment (compilers stay in this stage) ----
FROM python:3.11.11-slim-bookworm AS python
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY control ./control
COPY training ./training
COPY export ./export
COPY medvision_contract ./medvision_contract
# The base distribution only. The second command is the image's own proof that no torch
# came along (the CLI imports training/export lazily; their heavy deps are extras).
RUN /opt/venv/bin/pip install . \
    && /opt/venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

# --- 3. runtime: no compilers, no node, no pip cache; a non-root user ----------------------
FROM python:3.11.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 medvision \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/medvision \
       --no-create-home --shell /usr/sbin/nologin medvision \
    && mkdir -p /var/lib/medvision/models \
    && chown -R 10001:10001 /var/lib/medvision
COPY --from=python /opt/venv /opt/venv
COPY --from=web /src/web/dist /opt/medvision/web
# Copies the drift references (drift_reference.json beside each network's config.pbtxt) from
# the model store into MEDVISION_MODEL_REPOSITORY before the API starts (minio client).
COPY deploy/docker/fetch_models.py /opt/medvision/bin/fetch_models.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MEDVISION_WEB_DIR=/opt/medvision/web \
    MEDVISION_DATA_DIR=/var/lib/medvision \
    MEDVISION_MODEL_REPOSITORY=/var/lib/medvision/models
WORKDIR /var/lib/medvision
USER 10001:10001
EXPOSE 8080 11112
# Liveness of the API role (`/health`). The worker and the listener override it (compose
# and the chart): the worker has no port, the listener is checked on its DICOM port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
ENTRYPOINT ["medvision"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--no-worker"]
