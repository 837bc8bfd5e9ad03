# Multi-stage build for machines that can pull golang:1.26: a static opsd binary (CGO_ENABLED=0,
# pure-Go SQLite) in a scratch image, running as a non-root user, with a writable /tmp and a
# HEALTHCHECK on /health/ready at the job file's http.listen. The context is the Go sources only
# (.dockerignore). Without a registry, `bash .ci/image` builds the same image from a binary built
# on the host.
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
# Container exports need the Docker socket: mount it and add the socket's group with
# `--group-add $(stat -c %g /var/run/docker.sock)`.
USER 65532:65532
ENV OPSD_CONFIG=/etc/opsd/opsd.yaml TMPDIR=/tmp
EXPOSE 9100
VOLUME ["/var/lib/opsd"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/opsd", "healthcheck"]
ENTRYPOINT ["/opsd"]
CMD ["run"]
