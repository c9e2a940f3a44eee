"""Push: a job's end published at least once (event stream, webhook, batch count); open-stream limits."""
