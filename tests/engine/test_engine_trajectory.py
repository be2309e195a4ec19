"""A trajectory of one attempt held without a list answers as one made from a list does."""

from __future__ import annotations

import copy
import pickle

import pytest

from tokenflow import ActionContinue, ActionDone, TokenFlowRequest, TokenFlowRequestTrajectory
from tokenflow_tui.engine.trajectory import TokenFlowRequestTrajectoryElement, new_attempt, new_request


def element(params: object = "p") -> TokenFlowRequestTrajectoryElement:
    return TokenFlowRequestTrajectoryElement(params, result={"ok": 1}, action=ActionDone(), latency_s=0.5)


def test_one_attempt_without_a_list_answers_as_with_one():
    one = element()
    lazy, listed = TokenFlowRequestTrajectory(only=one), TokenFlowRequestTrajectory([one])
    assert (lazy.empty(), lazy.length(), lazy.first(), lazy.last()) == (False, 1, one, one)
    assert lazy == listed
    assert repr(lazy) == repr(listed) == f"TokenFlowRequestTrajectory(trajectory=[{one!r}])"
    assert lazy.snapshot() == listed


def test_asking_for_the_list_makes_it_once_and_keeps_it():
    one = element()
    lazy = TokenFlowRequestTrajectory(only=one)
    elements = lazy.trajectory
    assert elements == [one]
    assert lazy.trajectory is elements
    second = element("q")
    lazy.add(second)
    assert (lazy.length(), lazy.last(), elements) == (2, second, [one, second])


def test_a_snapshot_does_not_change_with_later_attempts():
    lazy = TokenFlowRequestTrajectory(only=element())
    kept = lazy.snapshot()
    lazy.add(element("q"))
    assert (kept.length(), lazy.length()) == (1, 2)


def test_an_empty_trajectory_and_a_given_list():
    assert TokenFlowRequestTrajectory().empty()
    assert TokenFlowRequestTrajectory().trajectory == []
    given = [element()]
    assert TokenFlowRequestTrajectory(given).trajectory is given
    with pytest.raises(ValueError, match="not both"):
        TokenFlowRequestTrajectory(given, only=element())


def test_it_pickles_and_copies_in_both_forms():
    for trajectory in (TokenFlowRequestTrajectory(only=element()), TokenFlowRequestTrajectory([element(), element()])):
        assert pickle.loads(pickle.dumps(trajectory)) == trajectory
        assert copy.deepcopy(trajectory) == trajectory


def test_it_is_not_hashable_as_the_dataclass_was_not():
    with pytest.raises(TypeError):
        hash(TokenFlowRequestTrajectory(only=element()))


def test_a_new_request_is_what_the_constructors_make_with_every_field_set():
    request, trajectory, first = new_attempt("r1", {"q": 1}, 7)
    made = TokenFlowRequest("r1", TokenFlowRequestTrajectory(only=TokenFlowRequestTrajectoryElement({"q": 1})), 7)
    assert (request, request.seq, request.waiting_for) == (made, 7, None)
    assert trajectory is request.request_trajectory and first is trajectory.first()
    # new_attempt fills the slots itself: one left unset would raise here
    for got, want in ((request, made), (first, made.request_trajectory.first())):
        assert [getattr(got, name) for name in type(got).__slots__] == [
            getattr(want, name) for name in type(want).__slots__
        ]
    assert new_request("r1", {"q": 1}, 7) == made


def test_every_action_done_is_one_instance_that_pickles_compares_and_refuses_fields():
    done = ActionDone()
    assert done is ActionDone() and done == ActionDone() and hash(done) == hash(ActionDone())
    assert pickle.loads(pickle.dumps(done)) is done and copy.deepcopy(done) is done
    assert repr(done) == "ActionDone()" and done != ActionContinue(None)
    with pytest.raises(AttributeError, match="cannot assign to field 'x'"):
        done.x = 1  # type: ignore[attr-defined]

    class Finished(ActionDone):
        pass

    assert Finished() is Finished() and Finished() != done and isinstance(Finished(), ActionDone)
