# syntax=docker/dockerfile:1
#
# shardchat as a container image: a static binary on distroless, run as a non-root user.
#
#   docker build -t shardchat --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) .
#   docker run --rm -p 3000:3000 shardchat
#
# Settings are environment variables (docker run -e REDIS_URL=redis://redis:6379 ...);
# `docker run --rm shardchat serve --help` lists them.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a change in the code does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# .git is not in the build context (.dockerignore), so the version comes from build args,
# as make build stamps it.
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/shardchat .

# static: no libc, no shell, no package manager; nonroot: uid and gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/shardchat /usr/local/bin/shardchat
USER 65532:65532
ENV SHARDCHAT_ADDR=:3000
EXPOSE 3000
# The image has no curl or shell: the binary asks itself. /readyz is 503 while the host
# drains or cannot reach Redis.
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/shardchat", "healthcheck", "--url", "http://127.0.0.1:3000/readyz", "--timeout", "3s"]
# SIGTERM drains (sessions close with 1012); give it more than SHARDCHAT_SHUTDOWN_TIMEOUT
# (10s) with `docker stop --time 20` or compose's stop_grace_period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/shardchat"]
CMD ["serve"]
