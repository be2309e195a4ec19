"""Traffic control: rate limits, the global slow-down on 429, the adaptive worker count, budgets,
and the storm detector (DESIGN §2.2 [limits], §6)."""

from .control import Traffic

__all__ = ["Traffic"]
