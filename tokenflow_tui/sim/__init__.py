"""The built-in OpenAI-compatible simulator."""

from .config import FAULT_KINDS, SimulatorConfig, parse_fail, validate_fail
from .process import SimulatorProcess
from .server import Simulator, SimulatorStats

__all__ = [
    "FAULT_KINDS",
    "Simulator",
    "SimulatorConfig",
    "SimulatorProcess",
    "SimulatorStats",
    "parse_fail",
    "validate_fail",
]
