# dp-lakehouse: the scheduled job image (Azure Container Apps Job, or any container runtime).
# Build: docker build -t dp-lakehouse .    Run: docker run --env-file job.env dp-lakehouse [COMMAND]
# Everything the job needs at run time - Python packages, the Delta and hadoop-azure jars, the
# managed-identity token provider - is resolved here, at build time: the container starts offline.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A JDK (javac) to build lakehouse/jvm; the runtime stage needs only a JRE.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jdk-headless \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY lakehouse/ lakehouse/
COPY streaming/ streaming/
COPY dp/ dp/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile -c requirements.lock . \
    && /opt/venv/bin/python -m lakehouse.jars --dest /opt/lakehouse/jars

FROM python:3.11-slim-bookworm
# procps: Spark's scripts call ps. `lakehouse` runs as PID 1 and exits cleanly on SIGTERM.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin lakehouse
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/lakehouse/jars /opt/lakehouse/jars
COPY conf/ /app/conf/
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    LAKEHOUSE_JARS_DIR=/opt/lakehouse/jars \
    LAKEHOUSE_CONF=/app/conf/azure.toml
USER 10001
ENTRYPOINT ["lakehouse"]
CMD ["run"]
