# syntax=docker/dockerfile:1
# One image for every role: `ferry worker`, `ferry api`, `ferry webhooks`, `ferry provision`.
#   docker build -t ferry .
#   docker run --rm ferry --help
# The build stage installs Ferry (with the `tracing` extra, so FERRY_OBSERVABILITY__TRACING
# can be turned on without a rebuild) into a virtualenv at the versions pinned in
# constraints.txt; the runtime stage copies only that virtualenv: no compiler, no pip cache,
# no tests, no dev tools, no embedded servers.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/ferry
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the pins change.
COPY constraints.txt ./
COPY pyproject.toml README.md ./
COPY service ./service
# Not editable: the package is copied into the virtualenv, and /src is left behind.
RUN /opt/ferry/bin/pip install --constraint constraints.txt ".[tracing]" \
    && /opt/ferry/bin/pip uninstall --yes pip setuptools \
    && /opt/ferry/bin/python -m compileall -q /opt/ferry/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="ferry" \
      org.opencontainers.image.description="Export/import job service: Kafka requests in, files in S3 out, a read-only lookup API." \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric id, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 ferry \
    && useradd --system --uid 10001 --gid ferry --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ferry
COPY --from=build /opt/ferry /opt/ferry
ENV PATH=/opt/ferry/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FERRY_LOG_FORMAT=json \
    FERRY_API__HOST=0.0.0.0 \
    FERRY_OBSERVABILITY__HEALTH_HOST=0.0.0.0 \
    FERRY_OBSERVABILITY__HEALTH_PORT=8081
# Nothing is written at run time, so the root filesystem can be read-only. The working
# directory is empty: no `.ferry/dev.env` of a developer can be picked up here.
WORKDIR /app
USER 10001:10001
# 8000: the API. 8081: /healthz, /readyz and /metrics of the worker and webhook roles.
EXPOSE 8000 8081
# Probes are per role (the API and the background roles answer on different ports), so they
# live in docker-compose.yml and the Helm chart rather than in one HEALTHCHECK here.
ENTRYPOINT ["ferry"]
CMD ["--help"]
