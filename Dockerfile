# Builds matrix-recorder (cgo for SQLite, goolm for Olm) into a small Debian image.
#   docker build -t matrix-recorder .
#   docker run -v $PWD/data:/data matrix-recorder
# The container reads /data/config.yaml; point data_dir and recordings.dir below /data.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=docker
RUN CGO_ENABLED=1 go build -tags goolm -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/matrix-recorder ./cmd/matrix-recorder

FROM debian:bookworm-slim
# ffmpeg: exports and the summary picture's voice activity (postcall).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 1000 --home /data recorder \
 && mkdir -p /data && chown recorder /data
COPY --from=build /out/matrix-recorder /usr/local/bin/matrix-recorder
USER recorder
WORKDIR /data
VOLUME /data
# Media over UDP: publish webrtc.udp_port (or the range) with -p PORT:PORT/udp.
ENTRYPOINT ["/usr/local/bin/matrix-recorder"]
CMD ["-config", "/data/config.yaml"]
