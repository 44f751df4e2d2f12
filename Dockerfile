# The same build that .ci/run proves: Go 1.27.3 on Debian 12, CGO_ENABLED=1 for
# the SQLite driver.
FROM golang:1.27.3-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/data-api ./cmd/data-api

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/data-api --create-home data-api
COPY --from=build /out/data-api /usr/local/bin/data-api
USER data-api
WORKDIR /var/lib/data-api
ENV DATA_API_SERVER_ADDR=:8080 \
    DATA_API_DATABASE_DSN=/var/lib/data-api/data-api.db
VOLUME /var/lib/data-api
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD ["data-api", "-probe", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["data-api"]
