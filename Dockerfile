# nadkit in a container: the service (`nadkit serve`) by default, any nadkit command otherwise.
#
#   docker build -t nadkit .
#   docker run --rm nadkit --help
#   docker compose up          (compose.yaml: the service with a volume for the store and models)
#
# TORCH_SPEC pins PyTorch, installed first so the project's "torch>=" requirement is already met; the
# other packages come at the versions constraints.txt names (the set the tests passed with).
# Give PIP_EXTRA_INDEX_URL a CPU wheel index of your choice to keep CUDA packages out of the image.
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0"
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

# libpcap for nfstream (packet captures and interfaces)
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpcap0.8 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 nadkit
WORKDIR /opt/nadkit

RUN pip install ${PIP_EXTRA_INDEX_URL:+--extra-index-url "$PIP_EXTRA_INDEX_URL"} "$TORCH_SPEC"
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
RUN pip install -c constraints.txt ".[pcap,onnx,service,pictures]"

USER nadkit
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"
ENTRYPOINT ["nadkit"]
CMD ["serve", "--db", "/data/alerts.db", "--models", "/data/models", "--host", "0.0.0.0", "--port", "8080"]
