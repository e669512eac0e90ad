# syntax=docker/dockerfile:1
# omnimemory-metrics: a static binary (CGO_ENABLED=0; SQLite is pure Go) on a
# distroless image, run as the unprivileged nonroot user (uid 65532).
#
#   docker build -t omnimemory-metrics .
#   docker compose up -d --build          (the whole stack, see docker-compose.yml)

# The Go version of go.mod's go directive: the golang images set
# GOTOOLCHAIN=local, so an older one would refuse to build.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# The dependencies first, as a layer of their own: go.mod, and the Go
# client's module, which go.mod's replace directive points at.
COPY go.mod go.sum ./
COPY client/go.mod client/go.sum ./client/
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=docker
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/omnimemory-metrics ./cmd/omnimemory-metrics \
 && mkdir -p /out/data/outbox

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/omnimemory-metrics /usr/local/bin/omnimemory-metrics
# /data holds the SQLite file or the InfluxDB outbox; owned by nonroot so a
# fresh named volume mounted there is writable.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV OMNIMEMORY_LISTEN=:8003 \
    SQLITE_DB_PATH=/data/metrics.db \
    OMNIMEMORY_OUTBOX_DIR=/data/outbox
EXPOSE 8003
VOLUME ["/data"]
# No HEALTHCHECK: distroless has no shell or curl, and the binary has no
# probe mode. Orchestrators probe GET /ready (store reachable) and
# GET /health over HTTP instead; Prometheus alerts on up == 0.
ENTRYPOINT ["/usr/local/bin/omnimemory-metrics"]
