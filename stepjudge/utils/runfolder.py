"""Run folders: every long job (evaluation, annotation, training) records its settings in ``run.json``
and refuses to resume a folder whose result-changing settings differ, so two configurations are never
mixed in one set of outputs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from stepjudge.errors import RunFolderError
from stepjudge.utils.io import atomic_write_json


def check_or_write_run_json(out: Path, task: str, config: Mapping, resume_keys: Iterable[str]) -> None:
    path = Path(out) / "run.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("task") not in (None, task):
            raise RunFolderError(f"{out} holds a '{saved.get('task')}' run, not '{task}'; use another --out")
        theirs = saved.get("config", {})
        diff = {k: (theirs.get(k), config.get(k)) for k in resume_keys if theirs.get(k) != config.get(k)}
        if diff:
            details = ", ".join(f"{k}: {a!r} in the folder vs {b!r} now" for k, (a, b) in diff.items())
            raise RunFolderError(f"{out} holds a run with different settings ({details}); "
                                 "use another --out or delete the folder")
    from stepjudge import __version__

    atomic_write_json(path, {"task": task, "stepjudge_version": __version__, "config": dict(config)})
