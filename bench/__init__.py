"""Load harness for the LLM job service."""
