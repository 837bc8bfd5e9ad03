# Multi-stage build for machines that can pull golang:1.26: a static opsd binary (CGO_ENABLED=0,
# pure-Go SQLite) in a scratch image, running as a non-root user, with a writable /tmp and a
# HEALTHCHECK on /health/ready at the job file's http.listen. The context is the Go sources only
# (.dockerignore). Without a registry, `bash .ci/image` builds the same image from a binary built
# on the host (and the host's pg_dump/pg_restore).
#
# The postgres kinds run PostgreSQL's own pg_dump and pg_restore: they are copied, with every
# library they load, from the official postgres image of PG_MAJOR (at least the platform
# server's major version: pg_dump refuses newer servers) to /usr/lib/postgresql/N/bin, where opsd
# looks first.
ARG PG_MAJOR=16
FROM postgres:${PG_MAJOR}-bookworm AS pgclient
ARG PG_MAJOR
RUN set -eu; mkdir -p /out; \
    for tool in pg_dump pg_restore; do \
      f="/usr/lib/postgresql/${PG_MAJOR}/bin/$tool"; \
      for p in "$f" $(ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do \
        mkdir -p "/out$(dirname "$p")" && cp -L "$p" "/out$p"; \
      done; \
    done; \
    "/out/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump" --version

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/opsd ./cmd/opsd \
 && mkdir -p /out/var/lib/opsd /out/etc/opsd /out/tmp && chmod 1777 /out/tmp \
 && echo 'opsd:x:65532:65532:opsd:/var/lib/opsd:/sbin/nologin' > /out/passwd \
 && echo 'opsd:x:65532:' > /out/group

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /usr/share/zoneinfo /usr/share/zoneinfo
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build --chown=65532:65532 /out/var/lib/opsd /var/lib/opsd
COPY --from=build --chown=65532:65532 /out/tmp /tmp
COPY --from=build /out/opsd /opsd
COPY --from=pgclient /out/ /
# Container exports need the Docker socket: mount it and add the socket's group with
# `--group-add $(stat -c %g /var/run/docker.sock)`.
USER 65532:65532
ENV OPSD_CONFIG=/etc/opsd/opsd.yaml TMPDIR=/tmp
EXPOSE 9100
VOLUME ["/var/lib/opsd"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/opsd", "healthcheck"]
ENTRYPOINT ["/opsd"]
CMD ["run"]
