# syntax=docker/dockerfile:1.7
# Stages: web (onnxruntime-web from npm) -> serve-deps (runtime venv) -> trainer (pipeline image, no torch) -> mlflow (tracking server)
#         -> runtime (the API; last, so a plain `docker build .` and Render build it).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- the on-phone runtime: onnxruntime-web from npm, pinned by the lockfile (Node only at build) ----
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# ---- runtime dependencies, locked, before the code (cached across code changes) ----------------
FROM ${PYTHON_IMAGE} AS serve-deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements/serve.txt /tmp/serve.txt
RUN pip install --no-deps -r /tmp/serve.txt && pip install --no-deps psycopg2-binary==2.9.13
COPY pyproject.toml README.md /src/
COPY src /src/src
COPY --from=web /web/node_modules/onnxruntime-web/dist/ort.wasm.min.js \
     /web/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.mjs \
     /web/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm /src/src/bunga/serving/static/ort/
RUN gzip -9 -n -k /src/src/bunga/serving/static/ort/* && pip install --no-deps /src
# The runtime needs neither pip, numpy's own test suite (about 40 MB together), onnxruntime's offline
# tooling (transformers, quantization, tools: 9 MB, never imported by an InferenceSession) nor the debug
# symbols of compiled extension modules (uvloop's alone are 12 MB; the libraries auditwheel bundles in
# *.libs/ are left alone: patchelf rewrote them and strip breaks them). binutils stays in this stage.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends binutils && rm -rf /var/lib/apt/lists/* \
 && pip uninstall --yes --quiet pip setuptools \
 && find /opt/venv -depth -type d -path "*/numpy/*" -name tests -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/onnxruntime/transformers \
      /opt/venv/lib/python3*/site-packages/onnxruntime/quantization /opt/venv/lib/python3*/site-packages/onnxruntime/tools \
 && find /opt/venv -type f \( -name "*.cpython-*.so" -o -name "*.abi3.so" \) -exec strip --strip-unneeded {} + \
 && python -c "import numpy, onnxruntime, uvloop, httptools, yaml, psycopg2, bunga.serving.app; numpy.ones(3) @ numpy.ones(3)"

# ---- training image: the [image] extra (bunga builds the backbone graph itself: no torch) ----
FROM ${PYTHON_IMAGE} AS trainer
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md /src/
COPY src /src/src
# postgres: the PostgreSQL inbox and prediction log (BUNGA_INBOX_DB / DATABASE_URL) that merge and monitor read
RUN pip install "/src[serve,image,postgres]"
RUN useradd --create-home --uid 10001 bunga && mkdir -p /work && chown bunga /work
USER 10001
WORKDIR /work
ENTRYPOINT ["bunga"]
CMD ["pipeline"]

# ---- MLflow tracking server on PostgreSQL with proxied artifacts -------------------------------
FROM ${PYTHON_IMAGE} AS mlflow
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# boto3: artifacts on S3 (--artifacts-destination s3://..., deploy/aws), proxied to clients by the server
RUN pip install "mlflow>=3.1,<4" "psycopg2-binary>=2.9" "boto3>=1.34"
RUN useradd --create-home --uid 10002 mlflow && mkdir -p /mlartifacts && chown mlflow /mlartifacts
USER 10002
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --retries=10 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]

# ---- the API: serving install only (no torch, no scikit-learn, no compiler), non-root ---------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    BUNGA_HOST=0.0.0.0 BUNGA_DATA_DIR=/data BUNGA_CACHE_DIR=/tmp/bunga-cache
COPY --from=serve-deps /opt/venv /opt/venv
RUN useradd --uid 10001 --no-create-home bunga && mkdir -p /data /models /monitor && chown bunga /data /monitor
# Optional baked model: `bunga export --out bunga-model` before `docker build`, then
# `docker build --build-arg MODEL_DIR=bunga-model .`; the files stay root-owned and read-only.
ARG MODEL_DIR=deploy/no-model
COPY --chmod=0444 ${MODEL_DIR}/ /models/
RUN find /models -type d -exec chmod 0555 {} +
USER 10001
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health\", timeout=4)"]
# A baked model is served when present; otherwise the registry's champions (MLFLOW_TRACKING_URI).
CMD ["sh", "-c", "if [ -z \"$BUNGA_MODEL_DIR\" ] && ls /models/*/bunga.json >/dev/null 2>&1; then export BUNGA_MODEL_DIR=/models; fi; exec bunga serve --host 0.0.0.0 --port \"${PORT:-8000}\""]
