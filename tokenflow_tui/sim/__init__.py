"""The built-in OpenAI-compatible simulator."""
