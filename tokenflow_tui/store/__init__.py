"""The store: records, results.jsonl, state.toml, the output lock, export and report."""
