"""Dashboard widgets, one module per feature."""
