"""The built-in OpenAI-compatible handler: transport, deadlines, retry policy, error kinds."""
