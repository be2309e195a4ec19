"""The seed's import name: `from tokenflow import TokenFlowTask, …` keeps working."""

from tokenflow_tui.engine import *  # noqa: F403
from tokenflow_tui.engine import __all__ as __all__
