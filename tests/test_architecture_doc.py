"""docs/architecture.md's worked examples ("add a method", "add a task") run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _blocks() -> dict[str, str]:
    """The doc's python blocks keyed by the heading they sit under."""
    blocks: dict[str, str] = {}
    for section in re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
        if code:
            blocks[title] = "\n".join(code)
    return blocks


def test_the_doc_has_both_worked_examples() -> None:
    assert set(_blocks()) == {"Add a method", "Add a task"}


def test_add_a_task_example_runs() -> None:
    exec(compile(_blocks()["Add a task"], str(DOC), "exec"), {})
    from stepjudge.tasks import registered_tasks

    assert "countdown" not in registered_tasks()  # the example cleans up after itself


@pytest.mark.filterwarnings("ignore")
def test_add_a_method_example_trains_and_runs_as_a_pipeline_stage(tmp_path) -> None:
    from stepjudge.train.rewards import registered_rewards, unregister_reward

    torch.set_num_threads(1)
    scope = {"run_folder": tmp_path / "run"}
    try:
        exec(compile(_blocks()["Add a method"], str(DOC), "exec"), scope)
    finally:
        if "brevity" in registered_rewards():  # the registry is process-wide: leave it as found
            unregister_reward("brevity")
    log = (tmp_path / "run" / "brevity" / "train_log.json").read_text()
    assert '"rewards/brevity_reward/mean"' in log
