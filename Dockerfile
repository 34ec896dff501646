# Image for the workers and the `topics` job of docker-compose.yml (with the PostgreSQL driver).
# Not needed for `make run` / `make test`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.cfg README.md constraints.txt ./
COPY signupflow ./signupflow
RUN pip install --no-cache-dir -c constraints.txt '.[postgres]' && pip check
ENV SIGNUPFLOW_DATA_DIR=/data SIGNUPFLOW_WEB_HOST=0.0.0.0
ENTRYPOINT ["signupflow"]
