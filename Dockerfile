# graphrunner's worker image: also runs `graphrunner setup`, `db upgrade` and `codec-server`
# (see docker-compose.yml). Configuration comes from the environment only (GRAPHRUNNER_*,
# TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, ...); nothing is baked in but the state directory.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package from this checkout, as a regular (not editable) install without dev extras.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY graphrunner ./graphrunner
RUN pip install . && rm -rf /src

# A user of its own: the worker runs graph code and never needs root.
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin graphrunner

# Graph implementations are imported from /app (the CLI's default --app-dir is the working
# directory). The image carries the examples; add your own packages in an image built
# FROM this one (COPY myagents /app/myagents) and list them in GRAPHRUNNER_IMPL_MODULES.
WORKDIR /app
COPY examples ./examples

USER 10001:10001
ENV GRAPHRUNNER_HOME=/home/graphrunner/.graphrunner
# 9464: the worker's Prometheus endpoint (GRAPHRUNNER_METRICS_BIND); 8081: codec-server.
EXPOSE 9464 8081

ENTRYPOINT ["graphrunner"]
CMD ["worker"]
