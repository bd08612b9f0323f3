"""Chat model adapters: OpenAI (and OpenAI-compatible servers), Anthropic, and replay files."""
