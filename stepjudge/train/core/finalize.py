"""The one end of every training run, RL or SFT: resume, train, and publish the result safely.

Every process calls :func:`train_to_final` (ZeRO-3/FSDP need all ranks to gather the shards when
saving); rank 0 alone writes files. ``final/`` is written beside its destination and then swapped
in (:func:`stepjudge.utils.io.replace_dir`), so a crash never leaves a half model where a later stage
would load it, and a reader never finds no ``final/`` while a re-run replaces it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stepjudge.train.report import RL_PANELS, Panels, plot_curves

log = logging.getLogger(__name__)

__all__ = ["find_last_checkpoint", "is_main_process", "train_to_final"]

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Where launchers put the global rank: torchrun / accelerate launch / deepspeed, then the MPI flavours.
_RANK_VARIABLES = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is global rank 0 (or the only one), as its launcher says in the environment.

    Files a training run writes outside the trainer (held-out scores before training, stats, a
    stage summary) are written by this process alone; reading the launcher's variable needs no
    process group, so it also holds before a trainer exists and after it is gone.
    """
    env = os.environ if environ is None else environ
    for name in _RANK_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return int(value) == 0
    return True


def find_last_checkpoint(out: str | os.PathLike) -> Path | None:
    """Newest ``checkpoint-N`` in ``out`` whose ``trainer_state.json`` (written last) is readable.

    A checkpoint torn by a crash mid-save lacks a valid state file and is skipped, so a resume falls
    back to the previous one instead of failing.
    """
    out = Path(out)
    if not out.is_dir():
        return None
    steps = sorted(((int(m.group(1)), p) for p in out.iterdir()
                    if p.is_dir() and (m := _CHECKPOINT.match(p.name))), reverse=True)
    for _, path in steps:
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("skipping incomplete checkpoint %s", path)
            continue
        return path
    return None


def train_to_final(trainer: Any, out: str | os.PathLike, what: str, *,
                   before_save: Callable[[Any], None] | None = None,
                   on_main: Callable[[Path], None] | None = None, panels: Panels = RL_PANELS) -> Path:
    """Train ``trainer`` (resuming from the newest complete checkpoint in ``out``), then publish.

    Writes ``out/final`` (safetensors + tokenizer, swapped in atomically), ``out/train_log.json``
    (TRL's log history) and ``out/curves.png``. ``before_save(trainer)`` runs on every rank just
    before saving (e.g. restore a chat template); ``on_main(final)`` runs on rank 0 after
    ``final/`` is in place (held-out scoring, a report) while the other ranks wait.
    """
    from stepjudge.utils.io import atomic_write_json, recover_replaced_dir, replace_dir

    out = Path(out)
    resume = find_last_checkpoint(out)
    if resume is not None:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    final, tmp = out / "final", out / ".final.tmp"
    main = trainer.is_world_process_zero()
    if main:
        recover_replaced_dir(final)
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    if before_save is not None:
        before_save(trainer)
    trainer.model.config.use_cache = True  # training may turn the KV cache off; generation wants it
    trainer.save_model(str(tmp))  # model (safetensors) + tokenizer
    trainer.accelerator.wait_for_everyone()
    if main:
        replace_dir(tmp, final)  # the previous final/ stays until the new one is in place
        atomic_write_json(out / "train_log.json", trainer.state.log_history)
        plot_curves(trainer.state.log_history, out / "curves.png", panels)
        if on_main is not None:
            on_main(final)
        log.info("%s done: %d steps, model in %s", what, trainer.state.global_step, final)
    trainer.accelerator.wait_for_everyone()
    return final
