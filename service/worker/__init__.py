"""The asyncio RQ worker: many jobs per process, RQ's queues, registries and semantics kept."""
