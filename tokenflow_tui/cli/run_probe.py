"""`tokenflow run`, as the command line runs it, that also tells the CPU its start-up took.

    python -m tokenflow_tui.cli.run_probe JOB.toml --headless

The interpreter's start and the imports a run needs happen first and are counted; then the run
goes exactly as `tokenflow run` (the same `cli.main`), and at its end one JSON line on stdout
gives {"startup_cpu_s": ...}. The parent takes the whole process's CPU from the OS and leaves the
start-up out, so what is left is the run's cost.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys

# what `tokenflow run` imports on its way to the first request (the handler and its client lazily)
_RUN_IMPORTS = ("..run.runner", ".headless", "..endpoint.openai_handler", "..endpoint.transport")


def main(argv: list[str]) -> int:
    from . import main as cli

    for module in _RUN_IMPORTS:
        importlib.import_module(module, __package__)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    code = cli.main(["run", *argv])
    print(json.dumps({"startup_cpu_s": usage.ru_utime + usage.ru_stime}))
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
