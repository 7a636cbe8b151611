"""Training-data selection for the policy: stepwise rejection sampling vs outcome-only (StepWiser Table 8).

From the N graded, judge-scored samples of each problem (``samples.jsonl`` of ``stepjudge rerank``):

* **judge selection** (:func:`select_judge_best`) keeps the correct sample the judge scores best (mean
  P(Positive) over its chunks), i.e. a right answer reached by steps the judge also trusts;
* **outcome-only selection** (:func:`select_outcome_only`) keeps a random correct sample (seeded), the
  baseline that looks at the final answer alone.

Both draw from the same pool, the **eligible** samples: correct *and* in the chunk format (they have a
score). A correct sample that broke the format is never used -- it would teach the chunk policy to drop
the format -- and keeping the pools equal makes the two SFT sets differ only in *which* correct sample
each problem contributes. A problem with no eligible sample gives ``None`` and is skipped by both.

Rows are TRL prompt-completion records ``{"prompt": base prompt text, "completion": sample text}`` (plus
``problem_id``, ``sample_index`` and ``score`` for tracing, which the trainer drops), written atomically
to ``sft_judge.jsonl`` and ``sft_outcome.jsonl`` with a ``stats.json``; one sampling run serves both.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

from stepjudge.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["eligible", "select_judge_best", "select_outcome_only", "sft_row", "load_samples",
           "build_selection_sets", "compare_selections"]


def eligible(samples: Sequence[dict]) -> list[int]:
    """Indices of the samples either selector may keep: correct and scored (chunk format intact)."""
    return [i for i, s in enumerate(samples) if s.get("correct") and s.get("score") is not None]


def select_judge_best(samples: Sequence[dict]) -> int | None:
    """The eligible sample with the highest judge score (ties: lowest index); None if there is none."""
    best = None
    for i in eligible(samples):
        if best is None or samples[i]["score"] > samples[best]["score"]:
            best = i
    return best


def select_outcome_only(samples: Sequence[dict], rng: random.Random) -> int | None:
    """A uniformly random eligible sample drawn with ``rng``; None if there is none (rng untouched)."""
    pool = eligible(samples)
    return rng.choice(pool) if pool else None


def sft_row(record: dict, index: int) -> dict:
    """Prompt-completion row: the exact text the policy was prompted with -> the selected sample."""
    s = record["samples"][index]
    return {"prompt": record["prompt"], "completion": s["text"], "problem_id": record["problem_id"],
            "sample_index": index, "score": s["score"]}


def load_samples(path: str | os.PathLike) -> list[dict]:
    """Read a ``samples.jsonl`` and check the fields selection needs, naming file:line field."""
    from stepjudge.utils.io import iter_jsonl

    if not Path(path).exists():
        raise DataError("samples file not found (run 'stepjudge rerank' first)", path=str(path))
    out = []
    for line, rec in iter_jsonl(path, what="samples file"):
        _check_record(rec, str(path), line)
        out.append(rec)
    if not out:
        raise DataError("no records (one problem's samples per line, from 'stepjudge rerank')", path=str(path))
    return out


def _check_record(rec: dict, path: str | None, line: int | None) -> None:
    for key in ("problem_id", "prompt"):
        if not isinstance(rec.get(key), str):
            raise DataError("expected a string", path=path, line=line, field=key)
    samples = rec.get("samples")
    if not isinstance(samples, list) or not samples:
        raise DataError("expected a non-empty list of samples", path=path, line=line, field="samples")
    for i, s in enumerate(samples):
        if not (isinstance(s, dict) and isinstance(s.get("text"), str) and isinstance(s.get("correct"), bool)
                and (s.get("score") is None or isinstance(s.get("score"), (int, float)))):
            raise DataError('each sample needs "text" (str), "correct" (bool) and "score" (number or null)',
                            path=path, line=line, field=f"samples[{i}]")


def build_selection_sets(samples: str | os.PathLike | Sequence[dict], out_dir: str | os.PathLike,
                         seed: int = 0) -> dict:
    """Write ``sft_judge.jsonl``, ``sft_outcome.jsonl`` and ``stats.json`` to ``out_dir``; returns the stats.

    ``samples`` is a ``samples.jsonl`` path or its records. The outcome-only draw for a problem uses its
    own ``Random(f"{seed}:{problem_id}")``, so it does not depend on the other problems or their order.
    """
    from stepjudge.utils.io import atomic_write_json, write_jsonl_atomic

    if isinstance(samples, (str, os.PathLike)):
        records = load_samples(samples)
    else:
        records = list(samples)
        for i, rec in enumerate(records):
            _check_record(rec, f"record {i}", None)
    judge_rows, outcome_rows = [], []
    same = 0
    judge_scores, outcome_scores = [], []
    for rec in records:
        j = select_judge_best(rec["samples"])
        o = select_outcome_only(rec["samples"], random.Random(f"{seed}:{rec['problem_id']}"))
        if j is None:  # then o is None too: same pool
            continue
        judge_rows.append(sft_row(rec, j))
        outcome_rows.append(sft_row(rec, o))
        same += j == o
        judge_scores.append(rec["samples"][j]["score"])
        outcome_scores.append(rec["samples"][o]["score"])
    out = Path(out_dir)
    write_jsonl_atomic(out / "sft_judge.jsonl", judge_rows)
    write_jsonl_atomic(out / "sft_outcome.jsonl", outcome_rows)

    def mean(xs: list[float]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    stats = {"problems": len(records), "selected_problems": len(judge_rows),
             "skipped_no_eligible_sample": len(records) - len(judge_rows),
             "correct_but_format_broken": sum(1 for r in records for s in r["samples"]
                                              if s["correct"] and s["score"] is None),
             "same_pick": same, "mean_score_judge_pick": mean(judge_scores),
             "mean_score_outcome_pick": mean(outcome_scores), "seed": seed,
             "files": {"judge": str(out / "sft_judge.jsonl"), "outcome": str(out / "sft_outcome.jsonl")}}
    atomic_write_json(out / "stats.json", stats)
    return stats


def compare_selections(samples: str | os.PathLike, out_dir: str | os.PathLike, *, base_policy: str,
                       sft: dict, evaluate: dict, seed: int = 0) -> dict:
    """StepWiser Table 8 in miniature: SFT the policy on judge- and on outcome-selected samples, then score
    the base policy and both fine-tuned ones on new problems with no judge.

    ``sft`` holds :class:`~stepjudge.train.policy_sft.PolicySFTConfig` options (without data/out; ``model``
    defaults to ``base_policy``); ``evaluate`` holds :class:`~stepjudge.infer.chunk_reset.ChunkResetConfig`
    options (without policy/out; it is run with ``reset: False``). Every part is skipped when its output
    exists, so a killed comparison resumes; ``summary.json`` is written last.
    """
    from stepjudge.infer.chunk_reset import ChunkResetConfig, run_chunk_reset
    from stepjudge.train.policy_sft import PolicySFTConfig, train_policy_sft
    from stepjudge.utils.io import atomic_write_json

    out = Path(out_dir)
    stats = build_selection_sets(samples, out / "sets", seed=seed)
    policies: dict[str, dict] = {"base": {"model": base_policy, "sft_rows": 0}}
    if stats["selected_problems"]:
        for name in ("judge", "outcome"):
            final = out / f"sft_{name}" / "final"
            if not (final / "model.safetensors").exists():
                final = train_policy_sft(PolicySFTConfig(**{"model": base_policy, **sft},
                                                         data=str(out / "sets" / f"sft_{name}.jsonl"),
                                                         out=str(out / f"sft_{name}")))
            policies[name] = {"model": str(final), "sft_rows": stats["selected_problems"]}
    else:
        log.warning("selection: no problem has a correct sample in the chunk format; nothing to fine-tune")
    for name, info in policies.items():
        summary = run_chunk_reset(ChunkResetConfig(**{**evaluate, "reset": False, "policy": info["model"],
                                                      "out": str(out / f"eval_{name}")}))
        method = summary["methods"][summary["primary"]]
        info.update(accuracy=method["accuracy"], problems=method["problems"],
                    mean_accepted_tokens=method["mean_accepted_tokens"])
    result = {"sets": stats, "policies": policies}
    atomic_write_json(out / "summary.json", result)
    return result


# ------------------------------------------------------------------ `stepjudge select build` as a config
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402  (section appended for the CLI)


class SelectionBuildConfig(BaseModel):
    """Every knob of ``stepjudge select build`` (YAML keys = these names)."""

    model_config = ConfigDict(extra="forbid")

    samples: str = Field(description="samples.jsonl of a 'stepjudge rerank' run")
    out: str = Field(description="folder for sft_judge.jsonl, sft_outcome.jsonl and stats.json")
    seed: int = Field(0, description="seed of the outcome-only random pick")


def build_selection_sets_from_config(config: SelectionBuildConfig) -> dict:
    """:func:`build_selection_sets` with the settings of one :class:`SelectionBuildConfig`."""
    return build_selection_sets(config.samples, config.out, seed=config.seed)
