"""`tokenflow simulate`: the simulator's own command line (also `python -m tokenflow_tui.sim`)."""

from __future__ import annotations

from ..sim.cli import add_arguments
from ..sim.cli import run as command

__all__ = ["add_arguments", "command"]
