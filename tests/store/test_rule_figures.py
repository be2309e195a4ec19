"""What each check and rule caught and rescued, folded from records (issue 14)."""

from __future__ import annotations

from tokenflow_tui.store.figures import RecordFigures
from tokenflow_tui.store.state_file import read_state, write_state


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def failed_check(check: str, rule: int | None = None, when: str = "") -> dict:
    error = {"kind": "check_failed", "message": "m", "check": check}
    if rule is not None:
        error["rule"] = {"index": rule, "when": when, "change": "c"}
    return {"error": error, "usage": usage(10, 5)}


RESCUED = {
    "index": 0,
    "status": "done",
    "attempts": [
        failed_check("finish_reason", 0, "finish_reason = length"),
        failed_check("json_schema", 1, "check_failed = json_schema"),
        {"result": "ok", "usage": usage(30, 7)},
    ],
}
GIVEN_UP = {
    "index": 1,
    "status": "failed",
    "attempts": [failed_check("json_schema", 1, "check_failed = json_schema"), failed_check("json_schema")],
}
TIMED_OUT_THEN_DONE = {
    "index": 2,
    "status": "done",
    "attempts": [
        {"error": {"kind": "timeout", "message": "t", "rule": {"index": 2, "when": "error = timeout", "change": "c"}}},
        {"result": "ok", "usage": usage(4, 4)},
    ],
}


def test_caught_rescued_and_the_tokens_after_the_first_catch():
    figures = RecordFigures()
    for offset, record in enumerate((RESCUED, GIVEN_UP, TIMED_OUT_THEN_DONE, {"status": "done", "attempts": [{}]})):
        figures.add(record, offset)
    rows = [
        (name, f.label, f.caught, f.rescued, f.prompt_tokens + f.completion_tokens) for name, f in figures.rules.rows()
    ]
    assert rows == [
        ("check finish_reason", "finish_reason", 1, 1, 15 + 37),  # the attempts after it: the second and third
        ("check json_schema", "json_schema", 3, 1, 37),
        ("rule 1", "finish_reason = length", 1, 1, 52),
        ("rule 2", "check_failed = json_schema", 2, 1, 37),
        ("rule 3", "error = timeout", 1, 1, 8),
    ]


def test_the_figures_survive_state_toml_and_an_older_state_has_none(tmp_path):
    figures = RecordFigures()
    figures.add(RESCUED, 0)
    path = tmp_path / "state.toml"
    write_state(path, {"figures": figures.to_data()})
    again = RecordFigures.from_data(read_state(path)["figures"])
    assert again is not None and again.rules.to_data() == figures.rules.to_data()
    older = figures.to_data()
    del older["rules"]
    assert RecordFigures.from_data(older).rules.by_key == {}
