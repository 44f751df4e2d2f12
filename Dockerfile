# The same build that .ci/run proves: Go 1.27.3 on Debian 12, CGO_ENABLED=1 for
# the SQLite driver.
FROM golang:1.27.3-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# SQLite's C source takes minutes to compile: done in a layer of its own (with
# the final build's -trimpath, so the cache matches), kept until go.mod or
# go.sum change rather than redone for every change to the code.
RUN CGO_ENABLED=1 go build -trimpath github.com/mattn/go-sqlite3
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/data-api ./cmd/data-api

FROM debian:bookworm-slim
# The service's user and group, 10001 (the Kubernetes manifests run as them),
# and the data folder and the deletion journal's that only they can read: a
# named volume mounted there starts as this folder. A host folder mounted
# instead must belong to uid 10001.
RUN groupadd --system --gid 10001 data-api \
 && useradd --system --uid 10001 --gid data-api --home-dir /var/lib/data-api --no-create-home \
      --shell /usr/sbin/nologin data-api \
 && install -d -o data-api -g data-api -m 0750 /var/lib/data-api \
 && install -d -o data-api -g data-api -m 0700 /var/lib/data-api-journal
COPY --from=build /out/data-api /usr/local/bin/data-api
# Numeric, so that Kubernetes can check runAsNonRoot without a runAsUser.
USER 10001:10001
# Not the data folder: the binary looks for config/data-api.yaml in its
# working directory, and a data folder it cannot read would stop it there.
WORKDIR /
ENV DATA_API_SERVER_ADDR=:8080 \
    DATA_API_DATABASE_DSN=/var/lib/data-api/data-api.db \
    DATA_API_JOURNAL_DIR=/var/lib/data-api-journal
VOLUME /var/lib/data-api /var/lib/data-api-journal
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD ["data-api", "-probe", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["data-api"]
