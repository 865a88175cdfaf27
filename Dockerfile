# crest-proxy: the guardrail gateway, CPU only. Two images from one file:
#
#   docker build -t crest-proxy:local .                      # torch included: exports CREST at first start
#   docker build -t crest-proxy:slim --target slim .         # no torch: the int8 artifact is baked in
#
# The slim image (about 0.9 GB smaller) serves a cached int8 ONNX artifact with onnxruntime and tokenizers
# alone, and starts in seconds; torch is only needed to export a checkpoint (issue 17). The model cache lives
# on /data (HF_HOME=/data/hf, CREST_PROXY_CACHE=/data/crest). See examples/compose.yaml for a runnable set-up.
FROM python:3.11-slim AS base

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
COPY pyproject.toml README.md ./
COPY crest_proxy ./crest_proxy
# Only the default tenant; mount your own directory over /app/policies (it is re-read on change).
COPY policies ./policies

VOLUME ["/data"]
EXPOSE 8080
# /healthz answers once the model is loaded and the server listens.
HEALTHCHECK --interval=15s --timeout=3s --start-period=900s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
ENTRYPOINT ["crest-proxy"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--policies", "/app/policies", \
     "--audit-log", "/data/audit/crest-audit.jsonl", "--audit-max-bytes", "104857600", \
     "--log-format", "json"]

# --- export: torch (CPU wheel; a plain `pip install torch` pulls several GB of CUDA) and the int8 artifact --
FROM base AS export
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install ".[export]" && crest-proxy --help > /dev/null
ARG CREST_MODEL=repelloai/CREST-Base
USER crest
RUN crest-proxy model pull --model "$CREST_MODEL" && crest-proxy model quantize --model "$CREST_MODEL"

# --- slim: no torch, no transformers; serves the artifact exported above -----------------------------------
FROM base AS slim
RUN pip install . && crest-proxy --help > /dev/null
COPY --from=export --chown=crest:crest /data/crest /data/crest
COPY --from=export --chown=crest:crest /data/hf /data/hf
USER crest

# --- full (the default): torch included, CREST exported and quantized at first start (minutes, once) ----
FROM base AS full
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install ".[export]" && crest-proxy --help > /dev/null
USER crest
