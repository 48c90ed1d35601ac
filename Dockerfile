# The flywheel's code location image (also used for the webserver and daemon services).
FROM python:3.12-slim
RUN apt-get update && apt-get install -y --no-install-recommends make git && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/flywheel
COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
ENV DAGSTER_HOME=/opt/dagster/home FLYWHEEL_LAKE=/data/lakehouse FLYWHEEL_TWIN_DIR=/data/twin HF_HOME=/data/hf
EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "dagster_project"]
