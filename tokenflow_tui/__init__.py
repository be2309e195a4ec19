"""TokenFlow TUI: send millions of requests to OpenAI-compatible APIs reliably, with a live dashboard."""

from .engine import *  # noqa: F403
from .engine import __all__ as __all__

__version__ = "0.1.0"
