"""The HTTP layer: validates and translates, never talks to the LLM."""
