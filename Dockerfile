# FHIR R4 server for care-coordination networks.
# Build: docker build -t fhir-server .
# Run:   docker run -p 8080:8080 -v fhir-data:/data fhir-server     (README: "Docker" for a host folder)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# fhir_server/profiles links to ../profiles: both are copied so the wheel ships the profiles.
COPY profiles ./profiles
COPY fhir_server ./fhir_server
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 fhir && mkdir /data && chown fhir:fhir /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# The example pathway, for `docker run ... fhir-server load /app/examples/pathway`.
COPY examples /app/examples
WORKDIR /app
USER fhir
# The SQLite database (and anything else written) lives in /data: mount a volume or a host folder there.
VOLUME ["/data"]
ENV FHIR_DATABASE_URL=sqlite:////data/fhir.db \
    PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/fhir/metadata', timeout=4).status == 200 else 1)"
ENTRYPOINT ["fhir-server"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
