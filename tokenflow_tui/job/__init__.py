"""The job: its file (model and TOML reader), input formats, fingerprint, handler loading, problems."""
