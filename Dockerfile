# syntax=docker/dockerfile:1
# Build: a static binary, no cgo, reproducible paths.
# The Go release go.mod names as its toolchain (security fixes over go 1.26.8).
FROM golang:1.26.11-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/authd ./cmd/authd

# Run: distroless static, non-root. The binary is its own health probe,
# since the image has no shell or curl.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authd /authd
USER 65532:65532
EXPOSE 8080
ENV AUTHD_LISTEN=:8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/authd", "healthcheck"]
ENTRYPOINT ["/authd"]
CMD ["serve"]
