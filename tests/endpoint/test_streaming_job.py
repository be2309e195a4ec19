"""A streamed job through the real command line: the simulator in its child process cuts streams mid-way,
and results.jsonl keeps every partial text, the usage and each attempt's time to first token."""

from __future__ import annotations

import tomllib
from collections import Counter

from run_helpers import read_records, tokenflow, write_input, write_job

from tokenflow_tui.sim.answers import count_tokens

COUNT = 200
MID_STREAM = {"reset": 0.03, "stall": 0.03, "malformed": 0.03, "truncated": 0.03, "no_done": 0.03}
# the simulator cuts a stream halfway through its events: for "tell me about item N", after four words
HALF = "Echo: tell me about "


def test_a_streamed_job_keeps_partial_texts_usage_and_ttft(tmp_path):
    prompts = write_input(tmp_path / "prompts.jsonl", COUNT)
    job = write_job(
        tmp_path,
        {
            "job": {"name": "s", "input": "prompts.jsonl", "output": "out"},
            "endpoint": {
                "simulate": True,
                "stream": True,
                "idle_timeout_s": 0.3,  # a stalled stream ends here, long before its stall_s or timeout_s
                "timeout_s": 30.0,
                "simulator": {"latency_ms": 5, "token_interval_ms": 1, "seed": 3, "fail": MID_STREAM},
            },
            "workers": {"count": 16},
            "retry": {"max_attempts": 6, "backoff_base_s": 0.01, "backoff_max_s": 0.02},
        },
    )
    run = tokenflow("run", str(job), "--headless", timeout=180)
    assert run.returncode == 0, run.stderr
    records = sorted(read_records(tmp_path / "out" / "results.jsonl"), key=lambda r: r["index"])
    assert [r["index"] for r in records] == list(range(COUNT))
    assert {r["status"] for r in records} == {"done"}
    kinds: Counter[str] = Counter()
    ttfts = 0
    for record, prompt in zip(records, prompts, strict=True):
        answer = f"Echo: {prompt}"
        assert record["result"] == answer
        usage = {"prompt_tokens": count_tokens(len(prompt)), "completion_tokens": count_tokens(len(answer))}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        # cut-off attempts bring no usage (it comes last in a stream): the record's is the answer's
        assert record["usage"] == usage
        *failed, last = record["attempts"]
        assert (last["usage"], last["finish_reason"]) == (usage, "stop")
        for attempt in record["attempts"]:
            assert attempt["ttft_ms"] is not None and 0 < attempt["ttft_ms"] <= attempt["latency_ms"]
            ttfts += 1
        for attempt in failed:
            error = attempt["error"]
            kinds[error["kind"]] += 1
            assert error["partial"] == HALF, error
    # resets, stalls and truncations are cut_off; a malformed chunk is a bad response; a missing [DONE] is fine
    assert set(kinds) == {"cut_off", "bad_response"}
    assert kinds["cut_off"] > kinds["bad_response"]
    state = tomllib.loads((tmp_path / "out" / "state.toml").read_text())
    assert sum(state["stats"]["ttft"].values()) == ttfts
    assert state["stats"]["errors_by_kind"] == dict(kinds)
    # the chart counted tokens as they arrived: the answers' usage, and the four words of each cut-off attempt
    total = sum(record["usage"]["total_tokens"] for record in records)
    assert sum(state["stats"]["history"]["tokens"]) == total + 4 * sum(kinds.values())
