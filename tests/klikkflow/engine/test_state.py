"""The execution state machine: named transitions, and events that survive storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter

from klikkflow.engine.graph import compile_workflow
from klikkflow.engine.runner import Runner
from klikkflow.engine.state import (
    TRANSITIONS,
    Event,
    ExecutionStatus,
    IllegalTransition,
    transition,
)
from klikkflow.engine.workflow import RetryPolicy, Workflow
from klikkflow.nodes.triggers import ScheduleParams, next_fire
from tests.klikkflow.engine.nodes_for_tests import registry

S = ExecutionStatus
ALLOWED = {
    ("start", S.QUEUED): S.RUNNING,
    ("park", S.RUNNING): S.WAITING,
    ("resume", S.WAITING): S.RUNNING,
    ("succeed", S.RUNNING): S.SUCCEEDED,
    ("fail", S.QUEUED): S.FAILED,
    ("fail", S.RUNNING): S.FAILED,
    ("fail", S.WAITING): S.FAILED,
    ("cancel", S.QUEUED): S.CANCELLED,
    ("cancel", S.RUNNING): S.CANCELLED,
    ("cancel", S.WAITING): S.CANCELLED,
}


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
@pytest.mark.parametrize("current", list(S))
def test_every_transition_from_every_state(name: str, current: ExecutionStatus):
    expected = ALLOWED.get((name, current))
    if expected is None:
        with pytest.raises(IllegalTransition, match=f"cannot {name} an execution that is"):
            transition(current, name)
    else:
        assert transition(current, name) == expected


def test_final_states_are_final():
    for final in (S.SUCCEEDED, S.FAILED, S.CANCELLED):
        assert all((name, final) not in ALLOWED for name in TRANSITIONS)


async def test_events_stored_as_json_replay_to_the_same_state():
    wf = Workflow.model_validate(
        {
            "name": "stored",
            "nodes": [
                {"id": "1", "name": "Start", "type": "manualTrigger"},
                {"id": "2", "name": "Loop", "type": "splitInBatches", "typeVersion": 3},
                {"id": "3", "name": "Body", "type": "test.echo"},
                {
                    "id": "4",
                    "name": "Flaky",
                    "type": "test.flaky",
                    "parameters": {"failTimes": 1},
                    "retry": {"maxTries": 2, "waitMs": 1},
                },
            ],
            "connections": [
                {"source": "Start", "target": "Loop"},
                {"source": "Loop", "sourceOutput": "loop", "target": "Body"},
                {"source": "Body", "target": "Loop"},
                {"source": "Loop", "sourceOutput": "done", "target": "Flaky"},
            ],
        }
    )
    stored: list[str] = []

    async def store(event):
        stored.append(event.model_dump_json())

    graph = compile_workflow(wf, registry())
    live = await Runner(graph, on_event=store, execution_id="stored").run(
        [{"json": {"n": n}} for n in range(3)]
    )
    assert live.status == S.SUCCEEDED
    adapter = TypeAdapter(Event)
    events = [adapter.validate_python(json.loads(text)) for text in stored]
    replayed = Runner(graph).replay(events)
    assert replayed.model_dump() == live.model_dump()


def test_retry_delays_grow_by_the_backoff_up_to_the_cap():
    policy = RetryPolicy(maxTries=6, waitMs=100, backoff=3, maxWaitMs=1000)
    assert [policy.delay_ms(n) for n in range(1, 6)] == [100, 300, 900, 1000, 1000]


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        # 09:00 in Oslo is 08:00 UTC in winter and 07:00 UTC once summer time starts.
        ("0 9 * * *", "Europe/Oslo", "2026-03-28T12:00:00+00:00", "2026-03-29T07:00:00+00:00"),
        ("0 9 * * *", "Europe/Oslo", "2026-03-27T12:00:00+00:00", "2026-03-28T08:00:00+00:00"),
        ("*/15 * * * *", "UTC", "2026-11-25T10:07:00+00:00", "2026-11-25T10:15:00+00:00"),
        (
            "30 17 * * 1-5",
            "America/New_York",
            "2026-11-27T23:00:00+00:00",
            "2026-11-30T22:30:00+00:00",
        ),
    ],
)
def test_schedule_ticks_in_its_time_zone(expression, zone, after, expected):
    params = ScheduleParams.model_validate(
        {
            "rule": {"interval": [{"field": "cronExpression", "expression": expression}]},
            "timezone": zone,
        }
    )
    tick = next_fire(params, datetime.fromisoformat(after))
    assert tick == datetime.fromisoformat(expected)
    assert tick.tzinfo is UTC


def test_a_bad_cron_expression_or_zone_is_refused():
    with pytest.raises(ValueError, match="not a valid cron expression"):
        ScheduleParams.model_validate({"rule": {"interval": [{"expression": "61 * * * *"}]}})
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        ScheduleParams.model_validate(
            {"rule": {"interval": [{"expression": "* * * * *"}]}, "timezone": "Mars/Olympus"}
        )
