# syntax=docker/dockerfile:1.7
# NVIDIA Triton Inference Server with MedVision's committed model folders (the Python
# pre/post-processing models and the ensembles) and what those models import. Network
# weights (cxr_net, brats_net, and the pre/post configs export rewrote) are NOT in the image:
# the entrypoint (or the chart's init container) copies them from the model store at
# start-up, so one image serves every model version. Release 24.10 is Triton 2.51, the
# version the local server and its tests use.
#   docker build -f deploy/docker/triton.Dockerfile -t medvision/triton:0.1.0 .

# --- 1. Python packages for the Python backend, built against the image's own Python -----
FROM nvcr.io/nvidia/tritonserver:24.10-py3 AS python
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# numpy < 2: the Python backend returns empty output tensors under numpy 2.
# onnxruntime: models exported with `--format python-onnx` run their network inside a Python
# model (the `onnx` and `tensorrt` formats use Triton's own backends instead).
# boto3: fetch_models.py, reading the model store (S3/MinIO; IRSA and instance profiles work).
RUN python3 -m pip install --target /opt/medvision/site-packages \
    "numpy==1.26.4" "onnxruntime==1.20.1" "boto3==1.35.76"

# --- 2. runtime -----------------------------------------------------------------------------
FROM nvcr.io/nvidia/tritonserver:24.10-py3 AS runtime
COPY --from=python /opt/medvision/site-packages /opt/medvision/site-packages
# The numpy-only contract package the Python models import (labels, regions, preprocessing,
# CT windows, CAM mapping, Triton parameters and BLS calls).
COPY medvision_contract /opt/medvision/lib/medvision_contract
COPY model_repository /opt/medvision/model_repository
COPY deploy/docker/triton-entrypoint.sh /opt/medvision/bin/triton-entrypoint.sh
COPY deploy/docker/fetch_models.py /opt/medvision/bin/fetch_models.py
# /models is where the served repository is assembled (an emptyDir or volume in production,
# so the root filesystem can stay read-only); the image's own user owns it.
RUN mkdir -p /models && chown 1000:1000 /models && chmod 0755 /opt/medvision/bin/*
# One OpenBLAS thread for the Python models (see control/triton/server.py server_environment).
ENV PYTHONPATH=/opt/medvision/lib:/opt/medvision/site-packages \
    MODEL_REPOSITORY_DIR=/models \
    TRITON_MODEL_CONTROL_MODE=none \
    OPENBLAS_NUM_THREADS=1
# triton-server (uid 1000) is the unprivileged user NVIDIA's image ships.
USER 1000:1000
EXPOSE 8000 8001 8002
# Ready = every model loaded (Triton's own readiness endpoint).
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4)"]
ENTRYPOINT ["/opt/medvision/bin/triton-entrypoint.sh"]
CMD ["serve"]
