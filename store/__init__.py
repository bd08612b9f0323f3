"""SQLite history of runs, candidates, evaluations and LLM calls (not built yet: store issue)."""
