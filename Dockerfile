# The flywheel's image: the code location (gRPC server, where runs execute), also used by the
# webserver and daemon services of docker-compose.yml. Same pinned environment as `make setup`.
# bookworm: its openjdk-17 runs Spark 4 (the Spark engine's driver, and the compose profile's master and worker)
FROM python:3.12-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends make git openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/flywheel
COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
ENV DAGSTER_HOME=/opt/dagster/home FLYWHEEL_LAKE=/data/lakehouse FLYWHEEL_TWIN_DIR=/data/twin HF_HOME=/data/hf
RUN mkdir -p $DAGSTER_HOME && cp deploy/dagster.yaml $DAGSTER_HOME/dagster.yaml && cp deploy/workspace.yaml /opt/dagster/workspace.yaml
EXPOSE 4000 3000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "dagster_project"]
