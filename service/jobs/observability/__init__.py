"""Observability: Prometheus series counted in Redis; token usage and cost by day, model and client."""
