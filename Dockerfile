# syntax=docker/dockerfile:1
# jitprov: multi-stage image. The builder turns the source into a wheel and installs it, with its
# dependencies, into a virtualenv; the runtime stage copies only that virtualenv onto a slim
# Python, runs as an unprivileged user and starts `jitprov serve`. No secret is baked in:
# JITPROV_SECRET_KEY, JITPROV_DATABASE_URL and JITPROV_BASE_URL come from the environment at run
# time (see docs/deployment.md and deploy/compose.yaml).
#
#   docker build -t jitprov:local .
#   docker run --rm jitprov:local db upgrade          # any jitprov command: the entrypoint is `jitprov`
#   docker run -p 8000:8000 -e JITPROV_SECRET_KEY=... -e JITPROV_DATABASE_URL=postgresql://... \
#              -e JITPROV_BASE_URL=https://sso.example.org jitprov:local   # = jitprov serve

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- builder ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
# Only what the wheel is built from (templates, static files and migrations are package data),
# and the lock file: the exact versions, with hashes, that `make run` installs too.
COPY pyproject.toml README.md ./
COPY requirements/run.lock ./requirements/run.lock
COPY src ./src
# jitprov_client (jitprov.client re-exports it): the server's wheel packages it from here too
COPY clients/python/src ./clients/python/src

# The dependencies from the lock (pip checks every hash), then the wheel without resolving again.
# lxml and xmlsec must come as the manylinux wheels: those carry their own libxml2 and
# libxmlsec1 (statically linked, one libxml2 shared by the pair; pyproject pins them together).
# Built from source they would need libxmlsec1-dev here and libxmlsec1 in the runtime stage.
RUN python -m venv /opt/jitprov \
 && /opt/jitprov/bin/pip install --require-hashes --only-binary=lxml,xmlsec,psycopg-binary \
        -r requirements/run.lock \
 && /opt/jitprov/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/jitprov/bin/pip install --no-deps /wheels/jitprov-*.whl \
 && /opt/jitprov/bin/python -c "import lxml.etree, xmlsec, psycopg; print('xml stack ok')" \
 && /opt/jitprov/bin/python -c "import jitprov.client" \
 && /opt/jitprov/bin/jitprov --help > /dev/null

# -- runtime ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="jitprov" \
      org.opencontainers.image.description="Self-hosted Just-in-Time user provisioning" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/jitprov/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# An unprivileged system user; its home is the working directory (the SQLite default and the
# generated-key fallback would live under var/ there: set JITPROV_DATABASE_URL and
# JITPROV_SECRET_KEY in production instead).
RUN groupadd --system --gid 10001 jitprov \
 && useradd --system --uid 10001 --gid jitprov --home-dir /var/lib/jitprov --create-home \
            --shell /usr/sbin/nologin jitprov

COPY --from=builder /opt/jitprov /opt/jitprov

WORKDIR /var/lib/jitprov
USER 10001:10001

EXPOSE 8000

# /healthz answers 200 once the app serves (serve refuses to start on an unmigrated database).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]

# `docker run IMAGE` serves; `docker run IMAGE db upgrade` (or any jitprov command) runs that.
# --host 0.0.0.0: reachable from the proxy on the container network (publish no port in
# production; only the proxy should reach the nodes).
ENTRYPOINT ["jitprov"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
