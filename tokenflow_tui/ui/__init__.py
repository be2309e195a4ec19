"""The Textual dashboard."""

from .app import TokenFlowApp, run_dashboard

__all__ = ["TokenFlowApp", "run_dashboard"]
