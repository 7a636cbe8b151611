"""``final/`` is replaced without a moment where no model is there: the new model is written to a sibling
and swapped in (``stepjudge.utils.io.replace_dir``); the old one is removed only after."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import stepjudge.utils.io as io
from stepjudge.utils.io import exchange_paths, recover_replaced_dir, replace_dir


def _model(folder: Path, tag: str) -> Path:
    folder.mkdir()
    (folder / "model.safetensors").write_text(tag)
    (folder / f"only-in-{tag}").write_text(tag)
    return folder


def _can_exchange(tmp_path: Path) -> bool:
    a, b = tmp_path / "probe-a", tmp_path / "probe-b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    swapped = exchange_paths(a, b)
    if swapped:
        assert (b / "x").read_text() == "a" and not (a / "x").exists()
    return swapped


@pytest.mark.parametrize("atomic", [True, False], ids=["exchange", "two renames"])
def test_replace_dir_publishes_the_new_folder_and_leaves_nothing_else(tmp_path, monkeypatch, atomic):
    if atomic and not _can_exchange(tmp_path):
        pytest.skip("this file system has no atomic rename exchange")
    if not atomic:
        monkeypatch.setattr(io, "exchange_paths", lambda a, b: False)  # as on macOS or an old kernel
    run = tmp_path / "run"
    run.mkdir()
    replace_dir(_model(run / ".final.tmp", "v1"), run / "final")  # nothing there yet: a plain rename
    assert sorted(p.name for p in run.iterdir()) == ["final"]
    replace_dir(_model(run / ".final.tmp", "v2"), run / "final")
    assert sorted(p.name for p in run.iterdir()) == ["final"]
    assert sorted(p.name for p in (run / "final").iterdir()) == ["model.safetensors", "only-in-v2"]
    assert (run / "final" / "model.safetensors").read_text() == "v2"


def test_final_is_never_missing_while_it_is_replaced(tmp_path):
    if not _can_exchange(tmp_path):
        pytest.skip("this file system has no atomic rename exchange")
    final = _model(tmp_path / "final", "v0")
    stop, seen, missing = threading.Event(), [0], [0]

    def watch() -> None:
        while not stop.is_set():
            seen[0] += 1
            if not (final / "model.safetensors").exists():
                missing[0] += 1

    reader = threading.Thread(target=watch)
    reader.start()
    try:
        for i in range(1, 301):
            replace_dir(_model(tmp_path / ".final.tmp", f"v{i}"), final)
    finally:
        stop.set()
        reader.join()
    assert seen[0] > 300 and missing[0] == 0
    assert (final / "model.safetensors").read_text() == "v300"


def test_a_crash_between_the_two_renames_is_recovered(tmp_path):
    # crashed after "final -> .final.old", before ".final.tmp -> final": the old model is put back
    _model(tmp_path / ".final.old", "old")
    _model(tmp_path / ".final.tmp", "new")
    recover_replaced_dir(tmp_path / "final")
    assert (tmp_path / "final" / "model.safetensors").read_text() == "old"
    assert not (tmp_path / ".final.old").exists()
    # crashed after both renames, before the old one was deleted: the new one stays, the old goes
    _model(tmp_path / ".final.old", "older")
    recover_replaced_dir(tmp_path / "final")
    assert (tmp_path / "final" / "model.safetensors").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".final.tmp", "final"]


def test_exchange_of_a_missing_path_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    if not _can_exchange(tmp_path):
        pytest.skip("this file system has no atomic rename exchange")
    with pytest.raises(FileNotFoundError):
        exchange_paths(tmp_path / "a", tmp_path / "nope")


def test_training_again_replaces_final_without_a_gap(tmp_path):
    """A real (tiny) training run over a folder that already holds a ``final/``: a reader polling it during
    the whole run never finds it missing, and afterwards only the new model is there."""
    if not _can_exchange(tmp_path):
        pytest.skip("this file system has no atomic rename exchange")
    from stepjudge.train.disc_sft import train_disc_sft

    rows = tmp_path / "disc.jsonl"
    rows.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{i} + 1 = {i + 1}"},
                                                     {"role": "assistant", "content": "+"}]}) + "\n"
                            for i in range(4)))
    out = tmp_path / "run"
    out.mkdir()
    old = _model(out / "final", "previous")
    stop, missing = threading.Event(), [0]

    def watch() -> None:
        while not stop.is_set():
            if not (old / "model.safetensors").exists():
                missing[0] += 1

    reader = threading.Thread(target=watch)
    reader.start()
    try:
        final = train_disc_sft({"model": "tiny-random", "train_data": str(rows), "out": str(out), "max_steps": 1,
                                "per_device_batch_size": 2, "gradient_accumulation_steps": 1, "max_length": 64,
                                "use_cpu": True})
    finally:
        stop.set()
        reader.join()
    assert missing[0] == 0
    assert final == out / "final" and not (final / "only-in-previous").exists()
    assert (final / "model.safetensors").stat().st_size > 1000  # the trained model, not the placeholder
    assert not (out / ".final.tmp").exists() and not (out / ".final.old").exists()
