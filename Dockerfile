# crest-proxy: the OpenAI-compatible guardrail gateway, CPU only.
#
#   docker build -t crest-proxy:local .                                   # model fetched at first start
#   docker build -t crest-proxy:local --build-arg QUANTIZE_AT_BUILD=true .  # model baked into the image
#
# The model cache lives on the /data volume (HF_HOME=/data/hf, CREST_PROXY_CACHE=/data/crest): the first
# start downloads repelloai/CREST-Base, exports it to ONNX and quantizes it to int8 (minutes); later
# starts reuse the artifact (seconds). See examples/compose.yaml for a runnable set-up.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/hf \
    CREST_PROXY_CACHE=/data/crest

RUN useradd --create-home --uid 10001 crest \
    && mkdir -p /data/hf /data/crest /data/audit /app \
    && chown -R crest:crest /data /app

WORKDIR /app

# torch first, from the CPU wheel index: a plain `pip install torch` would pull several GB of CUDA.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY crest_proxy ./crest_proxy
# [export]: torch, transformers, optimum to export the model at first start. An image that only serves a
# cached artifact or backend remote can `pip install .` and skip torch (docs/remote-classifier.md).
RUN pip install ".[export]" && crest-proxy --help > /dev/null

# Example tenant policies; mount your own directory over /app/policies (they are re-read on change).
COPY policies ./policies

# Optionally build the int8 artifact now, so that the container starts in seconds and needs no network.
ARG QUANTIZE_AT_BUILD=false
ARG CREST_MODEL=repelloai/CREST-Base
USER crest
RUN if [ "$QUANTIZE_AT_BUILD" = "true" ]; then \
        crest-proxy model pull --model "$CREST_MODEL" && crest-proxy model quantize --model "$CREST_MODEL"; \
    fi

VOLUME ["/data"]
EXPOSE 8080

# /healthz answers once the model is loaded and the server listens; the first start may take minutes.
HEALTHCHECK --interval=15s --timeout=3s --start-period=900s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"

ENTRYPOINT ["crest-proxy"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--policies", "/app/policies", \
     "--audit-log", "/data/audit/crest-audit.jsonl", "--audit-max-bytes", "104857600", \
     "--log-format", "json"]
