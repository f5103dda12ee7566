FROM python:3.11-slim
WORKDIR /srv/concord
COPY pyproject.toml README.md ./
COPY concord ./concord
COPY core ./core
COPY app ./app
COPY agents ./agents
COPY tables ./tables
COPY codecs ./codecs
COPY drift ./drift
COPY connectors ./connectors
COPY sandbox ./sandbox
COPY infra ./infra
COPY bench ./bench
RUN pip install --no-cache-dir .
ENV CONCORD_WEB_HOST=0.0.0.0 CONCORD_DATA_DIR=/var/lib/concord
EXPOSE 6066
CMD ["concord", "worker", "-l", "info"]
