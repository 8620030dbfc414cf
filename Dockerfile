# Operator Backlog: `ob serve` (gateway, bot, notifier, scheduler) against a real PostgreSQL.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY sql ./sql
COPY bot ./bot
COPY gateway ./gateway
COPY cli ./cli
RUN pip install --no-cache-dir . && useradd --create-home ob

USER ob
ENV OB_GATEWAY_HOST=0.0.0.0 \
    OB_DATA_DIR=/home/ob/data
EXPOSE 8765
CMD ["ob", "serve"]
