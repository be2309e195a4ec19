"""A job pointed at a port with nothing listening (issue 11 §4, DESIGN §6): it pauses with a sentence naming
the address and exits 1 after saving, and no request is burnt as failed. Real processes over loopback.
"""

from __future__ import annotations

import socket

from run_helpers import tokenflow, write_input, write_job


def free_port() -> int:
    """A loopback port that nothing listens on (bound once, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_dead_server_pauses_the_job_with_its_address_and_burns_no_request(tmp_path):
    address = f"http://127.0.0.1:{free_port()}/v1"
    write_input(tmp_path / "prompts.jsonl", 500)
    job = write_job(
        tmp_path,
        {
            "job": {"name": "dead", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {"base_url": address, "model": "m", "timeout_s": 2.0},
            "workers": {"count": 32},
            "retry": {"max_attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.02},
        },
    )
    results = tmp_path / "out" / "results.jsonl"
    for _run in range(2):  # the rerun meets the same dead server: still nothing burnt
        run = tokenflow("run", str(job), "--headless", timeout=60)
        assert run.returncode == 1, run.stderr
        assert f"dead: paused: the server at {address} cannot be reached (" in run.stderr
        assert "failed to connect: the connection failed: " in run.stderr
        assert run.stderr.rstrip().endswith("run the same command again to resume")
        assert "stopped with 0 of 500 requests finished; progress saved" in run.stderr
        assert not results.exists() or results.read_text() == ""
