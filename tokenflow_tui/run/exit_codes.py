"""Exit codes of `tokenflow run` (DESIGN §2.1, plus 1 for a job that stopped itself)."""

EXIT_DONE = 0  # every request has a final record, failed ones too
EXIT_STOPPED_BY_ITSELF = 1  # e.g. the server refused the key; progress saved
EXIT_INVALID = 2  # invalid job or input, or the output is unusable
EXIT_INTERRUPTED = 130  # interrupted; progress saved
EXIT_SOME_FAILED = 3  # with `run --fail-on-failed`: finished, but some requests' final record is failed
