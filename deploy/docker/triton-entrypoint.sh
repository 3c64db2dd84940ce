#!/bin/sh
# Assemble the served model repository, then (for `serve`) start Triton on it.
#   prepare  copy the committed model folders from the image into $MODEL_REPOSITORY_DIR, then
#            overlay the model store ($MODEL_STORE_URI, s3://bucket/prefix) on
#            them: network models and the pre/post configs export rewrote. The chart runs
#            this alone in an init container.
#   serve    prepare, then exec tritonserver with the flags below plus any extra arguments.
# Model control mode "none" (TRITON_MODEL_CONTROL_MODE): every model in the assembled
# repository loads at start and nothing changes under a running server; a new model version
# is a new rollout, so every replica serves exactly what its pod fetched (see values.yaml).
set -eu

MODEL_DIR="${MODEL_REPOSITORY_DIR:-/models}"

prepare() {
    mkdir -p "$MODEL_DIR"
    for folder in /opt/medvision/model_repository/*/; do
        cp -R "$folder" "$MODEL_DIR/"
    done
    if [ -n "${MODEL_STORE_URI:-}" ]; then
        python3 /opt/medvision/bin/fetch_models.py "$MODEL_STORE_URI" "$MODEL_DIR"
    else
        echo "MODEL_STORE_URI unset: serving the committed folders only" >&2
    fi
}

command="${1:-serve}"
[ "$#" -gt 0 ] && shift
case "$command" in
    prepare)
        prepare
        ;;
    serve)
        prepare
        exec tritonserver \
            --model-repository="$MODEL_DIR" \
            --model-control-mode="${TRITON_MODEL_CONTROL_MODE:-none}" \
            --http-port=8000 --grpc-port=8001 --metrics-port=8002 \
            --allow-metrics=true --allow-gpu-metrics=true \
            --exit-on-error=true --strict-readiness=true \
            "$@"
        ;;
    *)
        exec "$command" "$@"
        ;;
esac
