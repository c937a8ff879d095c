"""``lakehouse bench``: the pipelines measured against the machine's limit (a benchmark,
not a test: it prints its figures and writes them as JSON)."""
