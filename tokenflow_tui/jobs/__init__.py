"""Job files, the built-in handler, the store and the runner."""
