# syntax=docker/dockerfile:1
# flexforce worker image: `docker build -t flexforce .`, then `docker run flexforce worker`
# (or `flexforce topics create ...`, `flexforce publish ...` — the entrypoint is the CLI).
#
# Two stages so the runtime image carries the installed virtualenv only: no pip cache, no build
# tools, no source tree. Every native dependency (ortools, rocksdict, faust-streaming's
# extensions, numpy, aiohttp) ships manylinux wheels for CPython 3.11, so the builder needs no
# compiler either; both stages use the same base so the venv's interpreter path stays valid.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip wheel
# Build a wheel (not an editable install): the runtime must not depend on /src.
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY allocator ./allocator
COPY services ./services
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install /wheels/flexforce-*.whl \
    && /opt/venv/bin/flexforce --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="flexforce" \
      org.opencontainers.image.description="Event-driven, contract-aware capacity allocation for IT operations" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, non-root UID/GID: Kubernetes' runAsNonRoot can only verify a numeric USER, and
# volume ownership (RocksDB state) stays stable across image rebuilds.
ARG APP_UID=10001
ARG APP_GID=10001
RUN groupadd --system --gid ${APP_GID} flexforce \
    && useradd --system --uid ${APP_UID} --gid ${APP_GID} --home-dir /var/lib/flexforce \
       --no-create-home --shell /usr/sbin/nologin flexforce \
    && mkdir -p /var/lib/flexforce \
    && chown ${APP_UID}:${APP_GID} /var/lib/flexforce
COPY --from=builder /opt/venv /opt/venv
# Container defaults (all overridable): listen on every interface so probes and Prometheus
# reach the web port, keep RocksDB state in the volume-backed directory created above, and log
# unbuffered so `docker logs` / kubectl see lines as they are written.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLEXFORCE_WEB_HOST=0.0.0.0 \
    FLEXFORCE_WEB_PORT=6066 \
    FLEXFORCE_DATA_DIR=/var/lib/flexforce
WORKDIR /var/lib/flexforce
# No VOLUME instruction: one-shot commands (topics create, publish) would leave an anonymous
# volume behind on every run; compose and Kubernetes mount the state directory explicitly.
USER ${APP_UID}:${APP_GID}
EXPOSE 6066
# Liveness of the worker's web server (/health) with the stdlib: python:*-slim has no curl.
# One-shot commands (topics create, publish) finish long before the first check runs.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('FLEXFORCE_WEB_PORT', '6066'), timeout=4)"]
ENTRYPOINT ["flexforce"]
CMD ["worker"]
