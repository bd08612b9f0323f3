"""jinja2 templates for the coder and judge prompts (templates only; no prompt text in Python)."""
