"""LLM job service: a Flask API that queues Anthropic Messages calls for RQ workers."""
