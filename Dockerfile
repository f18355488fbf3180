# matrix-recorder in a small Debian stable (trixie) image: cgo for SQLite, -tags goolm for
# Olm, ffmpeg for exports. Only the release command is built (not the demo).
#
#   docker build -t matrix-recorder .
#   docker run --rm -v $PWD/recorder:/data matrix-recorder      # first run: writes
#       /data/config.yaml, says what to fill in, exits 2
#   docker run -d --name recorder --stop-timeout 60 -v $PWD/recorder:/data \
#       -p 8080:8080 -p 10000:10000/udp matrix-recorder
#
# The container runs as uid 1000; a /data owned by someone else: --user UID:GID (the
# entrypoint says so), see docs/compose.yaml. Stop with more time than -shutdown-timeout
# (30 s): Docker's default 10 s cuts the finalising short.
FROM golang:1.26-trixie AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# VERSION names the build when set (else the module's version, "(devel)" from a checkout).
ARG VERSION=
RUN CGO_ENABLED=1 go build -tags goolm -trimpath \
    -ldflags "-s -w ${VERSION:+-X main.version=$VERSION}" \
    -o /out/matrix-recorder ./cmd/matrix-recorder

FROM debian:trixie-slim
# ffmpeg: exports and the summary picture (postcall).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1000 recorder \
 && useradd --system --uid 1000 --gid 1000 --home-dir /data --no-create-home recorder \
 && mkdir -p /data && chown 1000:1000 /data
COPY --from=build /out/matrix-recorder /usr/local/bin/matrix-recorder
COPY scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint
USER 1000:1000
WORKDIR /data
VOLUME /data
ENV MATRIX_RECORDER_CONFIG=/data/config.yaml
# http.listen (downloads, webhooks) and webrtc.udp_port (media) as the first run writes
# them; metrics.listen (:9100) stays inside the container's network unless published.
EXPOSE 8080/tcp 10000/udp
HEALTHCHECK --interval=30s --timeout=10s --start-period=2m --retries=3 \
    CMD ["matrix-recorder", "healthcheck", "-c", "/data/config.yaml"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/docker-entrypoint"]
