"""What every screen of the dashboard needs to know about the run and the app's settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo

from ..run.contract import RunControl
from .lag import LagProbe


@dataclass(frozen=True, slots=True)
class DashboardContext:
    control: RunControl
    clock: Callable[[], float]  # wall-clock seconds since the epoch
    tz: tzinfo | None  # where times are shown; None is the machine's local time
    refresh_s: float
    chart_refresh_s: float
    lag: LagProbe
    read_only: bool = False  # a watching view (`tokenflow watch`): nothing that changes the job
