"""LLM providers, the coder and the judge (not built yet; see the agents issue)."""
