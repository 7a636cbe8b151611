"""Run folders: every long job (evaluation, annotation, training) records its settings in ``run.json``
and refuses to resume a folder whose result-changing settings differ, so two configurations are never
mixed in one set of outputs.

Order matters: a job validates its inputs first and only then opens its folder (:func:`run_folder`), so
a typo in an input path neither leaves a ``run.json`` behind nor pins the folder to the wrong settings.
While the job runs it holds the folder's lock (:class:`~stepjudge.utils.io.RunFolderLock`): a second
process writing into the same folder is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from stepjudge.errors import DataError, RunFolderError
from stepjudge.utils.io import RunFolderLock, atomic_write_json, read_json


def read_run_json(out: str | Path) -> dict | None:
    """The folder's ``run.json`` (None if there is none); a corrupt one is a RunFolderError naming it."""
    path = Path(out) / "run.json"
    if not path.exists():
        return None
    try:
        saved = read_json(path, what="run.json")
    except DataError as e:
        raise RunFolderError(f"{e}; this folder's settings are unreadable: restore run.json, or use another "
                             "--out") from None
    if not isinstance(saved.get("config", {}), dict):
        raise RunFolderError(f"{path}: field 'config': expected an object; restore run.json or use another --out")
    return saved


def check_or_write_run_json(out: Path, task: str, config: Mapping, resume_keys: Iterable[str]) -> None:
    """Refuse a folder holding another task or other result-changing settings; else (re)write run.json."""
    path = Path(out) / "run.json"
    saved = read_run_json(out)
    if saved is not None:
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


@contextlib.contextmanager
def run_folder(out: str | Path, task: str, config: Mapping, resume_keys: Iterable[str], *,
               lock_name: str = ".lock") -> Iterator[Path]:
    """Hold ``out``'s lock, check or write its ``run.json``, and yield the folder; call it only once the
    inputs are validated."""
    read_run_json(out)  # a corrupt run.json fails before the lock file is made: the folder stays as it was
    with RunFolderLock(out, lock_name):
        check_or_write_run_json(Path(out), task, config, resume_keys)
        yield Path(out)
