"""Webhooks: where a job's end may be sent (address policy) and how (signed delivery).
Knows nothing of RQ or Flask."""
