# One image, two commands (see docker-compose.yml):
#   vlmbot run              the bots (Telegram, Slack, web chat), talking to an engine over HTTP
#   vlmbot engine serve     the model behind an OpenAI-compatible API, on the GPU
#
# torch: by default pip takes the PyPI wheel, which on x86-64 Linux is built for CUDA and runs on a
# GPU or a CPU. For a smaller CPU-only image (the bot image needs no GPU when it talks to an engine
# server) pass the CPU wheel index:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t vlmbot:cpu .
# The NVIDIA driver comes from the host (NVIDIA Container Toolkit); the image needs no CUDA toolkit.
# Flash Attention 2 needs the CUDA toolkit to build, so it is left out; the engine falls back to sdpa.
#
# No secrets in the image: tokens and keys come from the environment (env_file: .env in compose).
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    VLMBOT_DATA_DIR=/data

# torch first, in its own layer: it is by far the largest dependency and changes least often.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"; \
    else \
        pip install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"; \
    fi

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY engine ./engine
COPY adapters ./adapters
COPY migrations ./migrations
RUN pip install . \
    && useradd --create-home --uid 10001 vlmbot \
    && mkdir -p -m 700 /data \
    && chown vlmbot:vlmbot /data

USER vlmbot
VOLUME ["/data"]
EXPOSE 8000 8080 8443 3000 9464
ENTRYPOINT ["vlmbot"]
CMD ["run"]
