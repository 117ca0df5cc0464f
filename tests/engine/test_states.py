"""next_action, exhaustively: every stage x copy task x deletion task x storage truth x
recovering, against the safety rules of DESIGN.md (Recovery), plus the table of its cases."""

from __future__ import annotations

import itertools

import pytest

from movedisk.engine.states import (
    FINAL,
    Action,
    MoveView,
    Stage,
    StorageTruth,
    TaskState,
    TaskView,
    allowed,
    needs_truth,
    next_action,
)

TRI = (None, True, False)
TASKS = [TaskView(s, None if s is TaskState.NONE else "t") for s in TaskState]
TRUTHS = [StorageTruth(*c) for c in itertools.product(TRI, TRI, TRI, TRI, TRI)]
CASES = list(itertools.product(Stage, (False, True), TASKS, TASKS, TRUTHS))


def test_every_combination_obeys_the_safety_rules() -> None:
    seen = set()
    for stage, recovering, copy, delete, truth in CASES:
        a = next_action(MoveView(stage, recovering), copy, delete, truth)
        seen.add(a)
        where = (stage, recovering, copy.state, delete.state, truth)
        if stage in FINAL:
            assert a is Action.DONE, where
            continue
        if a is Action.START_DELETE:
            # Never delete S unless D holds a complete copy whose data was re-read intact.
            assert truth.dst_complete is True and truth.dst_verified is True, where
            assert stage.switched, where
        if a in (Action.END_FAILURE, Action.COMPENSATE):
            # Ending with failure deletes what is on D: S must not be known incomplete.
            assert truth.src_complete is not False and not stage.switched, where
        if a is Action.SWITCH:
            # Durable before switch: D complete, and its data re-read intact just now.
            assert truth.dst_complete is True and truth.dst_verified is True, where
            assert not stage.switched, where
        if a is Action.VERIFY_COPY:
            assert truth.dst_verified is None and truth.dst_complete is True, where
        if truth.dst_verified is False:
            # A copy read back corrupt is never switched to nor trusted to delete S with.
            assert a not in (Action.SWITCH, Action.START_DELETE, Action.VERIFY_COPY), where
        if a is Action.START_COPY:
            assert stage is Stage.TEMPORARY_CREATED and copy.state is TaskState.NONE, where
            assert not recovering, where
        if stage.switched:
            assert a not in (Action.START_COPY, Action.RECORD_COPY, Action.WAIT_COPY,
                             Action.SWITCH, Action.END_FAILURE, Action.COMPENSATE), where
        else:
            assert a not in (Action.START_DELETE, Action.RECORD_DELETE, Action.WAIT_DELETE,
                             Action.END_SUCCESS, Action.END_LEFTOVER), where
    assert seen == set(Action)  # every action is reachable


def test_truth_is_asked_for_whenever_the_decision_depends_on_it() -> None:
    for stage, recovering, copy, delete in itertools.product(Stage, (False, True), TASKS, TASKS):
        view = MoveView(stage, recovering)
        if needs_truth(view, copy, delete):
            continue
        answers = {next_action(view, copy, delete, t) for t in TRUTHS}
        assert len(answers) == 1, (stage, recovering, copy.state, delete.state, answers)


R, S, F, N = TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.FAILED, TaskState.NONE
BOTH = StorageTruth(src_complete=True, src_present=True, dst_complete=True, dst_present=True,
                    dst_verified=True)
UNREAD = StorageTruth(src_complete=True, src_present=True, dst_complete=True, dst_present=True)
CORRUPT = StorageTruth(src_complete=True, src_present=True, dst_complete=True, dst_present=True,
                       dst_verified=False)
SRC_ONLY = StorageTruth(src_complete=True, src_present=True, dst_complete=False, dst_present=False)
PARTIAL = StorageTruth(src_complete=True, src_present=True, dst_complete=False, dst_present=True)
DST_ONLY = StorageTruth(src_complete=False, src_present=False, dst_complete=True, dst_present=True,
                        dst_verified=True)
DST_ONLY_CORRUPT = StorageTruth(src_complete=False, src_present=False, dst_complete=True,
                                dst_present=True, dst_verified=False)
NONE = StorageTruth(src_complete=False, src_present=True, dst_complete=False, dst_present=True)


@pytest.mark.parametrize("stage,recovering,copy,delete,truth,expected", [
    # DESIGN.md, Recovery: no copy task started -> compensate.
    (Stage.TEMPORARY_CREATED, True, N, N, SRC_ONLY, Action.COMPENSATE),
    (Stage.TEMPORARY_CREATED, False, N, N, SRC_ONLY, Action.START_COPY),
    # A copy started just before a crash is found by its tag, never started twice.
    (Stage.TEMPORARY_CREATED, True, R, N, None, Action.RECORD_COPY),
    (Stage.COPYING, True, R, N, None, Action.WAIT_COPY),
    # The copy failed or is unknown -> end with failure.
    (Stage.COPYING, True, F, N, PARTIAL, Action.END_FAILURE),
    (Stage.COPYING, True, N, N, PARTIAL, Action.END_FAILURE),
    # The copy succeeded, phase 3 never committed -> roll forward.
    (Stage.COPYING, True, S, N, BOTH, Action.SWITCH),
    # ... unless the copy on D is not complete.
    (Stage.COPYING, True, S, N, PARTIAL, Action.END_FAILURE),
    # The database lost phase 3 (failover) but S was deleted: D is the only copy -> roll forward.
    (Stage.COPYING, True, F, N, DST_ONLY, Action.SWITCH),
    (Stage.TEMPORARY_CREATED, True, N, N, DST_ONLY, Action.SWITCH),
    (Stage.COPYING, True, F, N, NONE, Action.STUCK),
    # Phase 3 committed -> finish the end with success.
    (Stage.SWITCHED, True, N, N, BOTH, Action.START_DELETE),
    (Stage.SWITCHED, True, N, R, None, Action.RECORD_DELETE),
    (Stage.DELETING_SOURCE, True, N, R, None, Action.WAIT_DELETE),
    (Stage.DELETING_SOURCE, True, N, S, None, Action.END_SUCCESS),
    (Stage.DELETING_SOURCE, True, N, F, None, Action.END_LEFTOVER),
    (Stage.DELETING_SOURCE, True, N, N, DST_ONLY, Action.END_SUCCESS),
    # Never delete the last complete copy.
    (Stage.SWITCHED, True, N, N, NONE, Action.STUCK),
    # Before a switch or a source deletion, D's data is re-read (the copy task's own check
    # may be stale), in the normal path and in recovery alike.
    (Stage.COPYING, False, S, N, UNREAD, Action.VERIFY_COPY),
    (Stage.COPYING, True, S, N, UNREAD, Action.VERIFY_COPY),
    (Stage.SWITCHED, True, N, N, UNREAD, Action.VERIFY_COPY),
    (Stage.SWITCHED, False, N, N, UNREAD, Action.VERIFY_COPY),
    # Read back corrupt before phase 3, S intact: end with failure (D's copy is deleted).
    (Stage.COPYING, False, S, N, CORRUPT, Action.END_FAILURE),
    (Stage.COPYING, True, S, N, CORRUPT, Action.END_FAILURE),
    # ... but when S is gone too, there is no copy left to trust: touch nothing.
    (Stage.COPYING, True, F, N, DST_ONLY_CORRUPT, Action.STUCK),
    (Stage.TEMPORARY_CREATED, True, N, N, DST_ONLY_CORRUPT, Action.STUCK),
    # After phase 3, D corrupt and S intact: S is never deleted; stop with both copies.
    (Stage.SWITCHED, True, N, N, CORRUPT, Action.STUCK),
    (Stage.DELETING_SOURCE, True, N, N, CORRUPT, Action.STUCK),
])
def test_recovery_cases(stage, recovering, copy, delete, truth, expected) -> None:
    got = next_action(MoveView(stage, recovering), TaskView(copy, "c"), TaskView(delete, "d"), truth)
    assert got is expected


def test_transitions_lead_only_forward_and_final_stages_nowhere() -> None:
    for s in FINAL:
        assert not any(allowed(s, t) for t in Stage)
    assert allowed(Stage.TEMPORARY_CREATED, Stage.COPYING)
    assert not allowed(Stage.SWITCHED, Stage.ENDED_FAILURE)
    assert not allowed(Stage.COPYING, Stage.TEMPORARY_CREATED)
