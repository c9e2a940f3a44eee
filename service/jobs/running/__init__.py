"""Running: a job's attempts, streamed progress, provider gate and retries; cancel and retry on request."""
