"""What an operator watches: Prometheus metrics, log lines with request and batch ids
(docs/observability.md). Below the HTTP edge, so the engine's processes use it too."""
