# One image for every service; docker-compose.yml picks the process with its command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml setup.cfg README.md ./
RUN mkdir -p shared services gateway paysys \
    && touch shared/__init__.py services/__init__.py gateway/__init__.py paysys/__init__.py \
    && pip install .

COPY . .
# Editable: the alembic environment and every service's migrations stay where paysys looks.
RUN pip install --no-deps -e .

RUN useradd --system --uid 10001 paysys
USER paysys

EXPOSE 8000
CMD ["paysys", "--help"]
