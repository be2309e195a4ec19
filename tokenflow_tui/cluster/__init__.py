"""One job across a Ray cluster (`tokenflow run JOB.toml --ray ADDRESS`): the input split into shards,
each run by one async Ray actor holding a JobRunner; a lease actor shares the job-wide limits, holds
and budgets; the driver combines the shards into one RunControl for the dashboard or headless lines.

`ray` is an optional extra, imported only in this package (`import_ray`).
"""

from __future__ import annotations

import os
from types import ModuleType

RAY_EXTRA = "pip install 'tokenflow-tui[ray]'"


class ClusterError(Exception):
    """The job cannot run on the cluster; the message is a sentence for the user."""


def import_ray() -> ModuleType:
    """The ray module, with usage statistics off unless the user set RAY_USAGE_STATS_ENABLED."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray
