"""LLM providers and, next, the coder and judge agents.

`registry.make_model("openai:MODEL" | "anthropic:MODEL" | "replay:FILE.jsonl")` gives a
`ChatModel`; `pricing` holds the model table (models.toml) and the budget; `retry` the single retry
policy. The coder, the judge and their prompts are the optimize-loop issue's remaining work.
"""
