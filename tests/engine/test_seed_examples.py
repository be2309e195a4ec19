"""The original TokenFlow README's examples run unchanged against an OpenAI-compatible server.

The files in seed_examples/ are the seed's examples, verbatim; openai.AsyncOpenAI finds the built-in
simulator through OPENAI_BASE_URL.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tokenflow_tui.sim import SimulatorConfig, SimulatorProcess

EXAMPLES = Path(__file__).parent / "seed_examples"


def run_example(name: str, latency_ms: float, stdin: str = "") -> list[str]:
    with SimulatorProcess(SimulatorConfig(latency_ms=latency_ms, fail={"500": 0.02}, seed=2)) as sim:
        env = {**os.environ, "OPENAI_BASE_URL": sim.base_url, "OPENAI_API_KEY": "sk-test", "OPENAI_MAX_RETRIES": "0"}
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / name)], input=stdin, capture_output=True, text=True, env=env, timeout=120
        )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "All done"
    return ast.literal_eval(lines[-2])


def test_simple_task_example():
    results = run_example("simple_task.py", latency_ms=5)
    # max_tokens=4 cuts "Echo: say N" to 4 words: the whole answer
    assert results == [f"Echo: say {i}" for i in range(50)]


def test_pause_and_resume_example():
    # 50 requests through 2 workers at 250 ms take longer than the example's 5 s before it pauses
    results = run_example("pause_and_resume.py", latency_ms=250, stdin="\n")
    assert results == [f"Echo: say {i}" for i in range(50)]
