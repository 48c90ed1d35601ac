# The flywheel's image: the code location (gRPC server, where runs execute), also used by the
# webserver and daemon services of docker-compose.yml. Same pinned environment as `make setup`.
# bookworm: its openjdk-17 runs Spark 4 (the Spark engine's driver, and the compose profile's master and worker)
# delta-spark's jars, fetched by Maven and checked against the pinned sha256 sums (scripts/fetch-jars.sh)
FROM maven:3.9-eclipse-temurin-17 AS jars
WORKDIR /src
COPY deploy/delta-spark deploy/delta-spark
COPY scripts/fetch-jars.sh scripts/fetch-jars.sh
RUN scripts/fetch-jars.sh && test -f .jars/delta-spark/delta-storage-4.4.0.jar

FROM python:3.12-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends make git openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/flywheel
COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
COPY --from=jars /src/.jars /opt/flywheel/.jars
ENV DAGSTER_HOME=/opt/dagster/home FLYWHEEL_LAKE=/data/lakehouse FLYWHEEL_TWIN_DIR=/data/twin HF_HOME=/data/hf
RUN mkdir -p $DAGSTER_HOME && cp deploy/dagster.yaml $DAGSTER_HOME/dagster.yaml && cp deploy/workspace.yaml /opt/dagster/workspace.yaml
EXPOSE 4000 3000
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "dagster_project"]
