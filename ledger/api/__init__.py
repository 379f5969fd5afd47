"""The HTTP API (Litestar): controllers by resource, authentication, Idempotency-Keys, problem details."""
