# nnsearch: one image for the create step, the workers and the dashboard.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    NNSEARCH_ARTIFACTS=/data/artifacts

RUN useradd --create-home --uid 10001 nnsearch \
    && mkdir -p /data/artifacts && chown -R nnsearch:nnsearch /data

WORKDIR /app
# The package only: no test or lint tools in the image.
COPY pyproject.toml README.md ./
COPY model ./model
COPY search ./search
COPY nnsearch ./nnsearch
RUN pip install . && rm -rf /root/.cache

# Studies are mounted over this at run time (docker-compose.yml), so edits need no rebuild.
COPY studies ./studies

USER nnsearch
ENTRYPOINT ["nnsearch"]
CMD ["--help"]
