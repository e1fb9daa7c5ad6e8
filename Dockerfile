# dp-lakehouse: the scheduled job image (Azure Container Apps Job, or any container runtime).
# Build: docker build -t dp-lakehouse .    Run: docker run --env-file job.env dp-lakehouse [COMMAND]
# Everything the job needs at run time - Python packages, the Delta and hadoop-azure jars, the
# managed-identity token provider - is resolved here, at build time: the container starts offline.

FROM python:3.11-slim-bookworm AS build
# Where no registry is reachable, `make image` makes this base locally (deploy/local-base-image.sh):
# Debian's Python 3.11 at /usr/bin/python3 instead of the official image's /usr/local/bin/python.
ARG DEBIAN_FRONTEND=noninteractive
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A JDK (javac) to build lakehouse/jvm; the runtime stage needs only a JRE.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jdk-headless \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Layers from the slowest-changing up: the pinned dependencies, then the jars (they depend only on
# the pyspark / delta-spark versions and lakehouse/jvm), then our own code, so that a change to the
# code rebuilds in seconds.
COPY pyproject.toml requirements.lock ./
RUN python -m venv /opt/venv \
    && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
       > /tmp/requirements.txt \
    && /opt/venv/bin/pip install --no-compile -c requirements.lock -r /tmp/requirements.txt
COPY lakehouse/__init__.py lakehouse/jars.py lakehouse/jvm_process.py lakehouse/errors.py lakehouse/
COPY lakehouse/jvm/ lakehouse/jvm/
# Spark's resolver starts a local driver: the build container's hostname need not resolve (podman).
RUN SPARK_LOCAL_IP=127.0.0.1 /opt/venv/bin/python -m lakehouse.jars --dest /opt/lakehouse/jars
COPY README.md ./
COPY lakehouse/ lakehouse/
COPY streaming/ streaming/
COPY dp/ dp/
# Our code as a wheel, not into the venv: the venv (1 GB) then stays an unchanged, cached layer of
# the runtime stage when only the code changes.
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /dist .

FROM python:3.11-slim-bookworm
ARG DEBIAN_FRONTEND=noninteractive
# procps: Spark's scripts call ps. `lakehouse` runs as PID 1 and exits cleanly on SIGTERM.
# No JAVA_HOME: pyspark runs the `java` on PATH, the same on amd64 and arm64. No SPARK_LOCAL_IP
# either: `lakehouse` sets it for local[*] masters only (a spark:// driver must bind a real address).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin lakehouse
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/lakehouse/jars /opt/lakehouse/jars
COPY --from=build /dist/ /tmp/dist/
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-compile --no-deps --no-index /tmp/dist/*.whl \
    && rm -rf /tmp/dist
COPY conf/ /app/conf/
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    LAKEHOUSE_JARS_DIR=/opt/lakehouse/jars \
    LAKEHOUSE_CONF=/app/conf/azure.toml
USER 10001
ENTRYPOINT ["lakehouse"]
CMD ["run"]
