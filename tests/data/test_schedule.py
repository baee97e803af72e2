"""The continual multi-task schedule file: its rules (errors naming the file, entry and value), the plan
(exact counts per stage, deterministic in the seed, every rank the same), shares by the largest remainder."""
from __future__ import annotations

import json

import numpy as np
import pytest

from uer_ds.data.schedule import ScheduleError, largest_remainder, read_schedule, tasks_of_steps


def write(tmp_path, schedule, name="schedule.json"):
    path = tmp_path / name
    path.write_text(json.dumps(schedule), encoding="utf-8")
    return str(path)


TASKS = {"masking": {"dataset": "mlm"}, "reorder": {"dataset": "/abs/sr", "task_id": 5}, "distance": {"dataset": "sd"}}


def test_a_two_stage_schedule_and_its_plan(tmp_path):
    path = write(tmp_path, {"tasks": TASKS, "stages": [
        {"steps": 10, "tasks": {"masking": 2, "reorder": 1, "distance": 1}},
        {"tasks": {"masking": {"steps": 3}, "reorder": {"steps": 2}, "distance": {"steps": 1}}}]})
    s = read_schedule(path)
    assert [t.task_id for t in s.tasks] == [0, 5, 2]  # default: the task's place in "tasks"
    assert s.tasks[0].dataset == str(tmp_path / "mlm") and s.tasks[1].dataset == "/abs/sr"
    # 10 steps at 2:1:1 -> 5, 2.5, 2.5: floors 5, 2, 2, the last step to the first of the tied remainders
    assert [st.counts for st in s.stages] == [{"masking": 5, "reorder": 3, "distance": 2},
                                              {"masking": 3, "reorder": 2, "distance": 1}]
    assert s.total_steps == 16 and s.stage_of(10) == 0 and s.stage_of(11) == 1
    plan = s.plan(seed=7)
    assert plan.shape == (16,)
    assert np.bincount(plan[:10], minlength=3).tolist() == [5, 3, 2]
    assert np.bincount(plan[10:], minlength=3).tolist() == [3, 2, 1]
    assert np.array_equal(plan, s.plan(seed=7)) and not np.array_equal(plan, s.plan(seed=8))
    assert tasks_of_steps(plan, 4, 12, 3).tolist() == np.bincount(plan[3:12], minlength=3).tolist()
    assert tasks_of_steps(plan, 5, 4, 3).tolist() == [0, 0, 0]


def test_largest_remainder():
    assert largest_remainder({"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    assert largest_remainder({"a": 0.7, "b": 0.3}, 7) == {"a": 5, "b": 2}
    assert sum(largest_remainder({"a": 3, "b": 5, "c": 11}, 1001).values()) == 1001


@pytest.mark.parametrize("schedule,match", [
    ({"tasks": {}, "stages": []}, r"'tasks' must be a non-empty object"),
    ({"tasks": {"a": "mlm"}, "stages": []}, r"task 'a' has 'mlm': it needs \{\"dataset\""),
    ({"tasks": {"a": {"dataset": "x", "id": 1}}, "stages": []}, r"task 'a' has unknown key\(s\) \['id'\]"),
    ({"tasks": {"a": {"dataset": "x", "task_id": -1}}, "stages": []}, r"task 'a' has task_id -1: must be an integer"),
    ({"tasks": {"a": {"dataset": "x", "task_id": 1}, "b": {"dataset": "y"}}, "stages": []},
     r"tasks 'a' and 'b' both have task_id 1"),
    ({"tasks": TASKS, "stages": []}, r"'stages' must be a non-empty list"),
    ({"tasks": TASKS, "stages": [{"tasks": {"masking": 1}}]}, r"stages\[0\]: shares need the stage's 'steps'"),
    ({"tasks": TASKS, "stages": [{"steps": 5, "tasks": {"mask": 1}}]},
     r"stages\[0\]: task 'mask' is not one of the schedule's tasks \(masking, reorder, distance\)"),
    ({"tasks": TASKS, "stages": [{"steps": 5, "tasks": {"masking": 0}}]}, r"task 'masking' has share 0: must be a positive"),
    ({"tasks": TASKS, "stages": [{"steps": 5, "tasks": {"masking": 1, "reorder": {"steps": 2}}}]},
     r"give every task a share \(a number\) or every task \{\"steps\": N\}, not both"),
    ({"tasks": TASKS, "stages": [{"steps": 5, "tasks": {"masking": {"steps": 2}}}]},
     r"'steps' is 5 but its tasks' steps sum to 2"),
    ({"tasks": TASKS, "stages": [{"steps": 2, "tasks": {"masking": 10, "reorder": 1, "distance": 1}}]},
     r"task\(s\) \['reorder', 'distance'\] get 0 of the stage's 2 steps"),
    ({"tasks": TASKS, "stages": [{"steps": 6, "tasks": {"masking": 1, "reorder": 1, "distance": 1}},
                                 {"steps": 6, "tasks": {"masking": 1, "distance": 1}}]},
     r"stages\[1\] drops task\(s\) \['reorder'\] that stages\[0\] trains: a stage keeps the earlier tasks training"),
    ({"tasks": TASKS, "stages": [{"steps": 6, "tasks": {"masking": 1, "reorder": 1}}]},
     r"task\(s\) \['distance'\] appear in no stage"),
    ({"tasks": TASKS, "stages": [{"steps": 6, "tasks": {"masking": 1}, "share": 1}]},
     r"stages\[0\] has unknown key\(s\) \['share'\]"),
])
def test_bad_schedules_name_the_file_and_the_rule(tmp_path, schedule, match):
    path = write(tmp_path, schedule)
    with pytest.raises(ScheduleError, match=match) as err:
        read_schedule(path)
    assert str(err.value).startswith(path)


def test_bad_json_names_the_line(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"tasks": {\n  "a": }\n}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"s.json:2:\d+: not valid JSON"):
        read_schedule(str(path))
