"""LaSeR's stages, each declared once with :func:`~stepjudge.pipeline.registry.register_stage`.

============== ============================================= ===============================================
stage          what                                          done when
============== ============================================= ===============================================
laser          ``stepjudge train laser``: GRPO + last-token  laser/final/ and laser/train_log.json
               self-rewarding from ``policy``
laser_baseline plain GRPO (``self_reward: off``) from the    laser_baseline/final/ and train_log.json
               same start, data and settings
self_verify    ``stepjudge eval self-verify`` of every       self_verify/summary.json
               policy trained in this run (and the start)
============== ============================================= ===============================================

All three are *optional*: they run only when their YAML section is given or they are named in
``stages``, so the StepWiser pipeline is unchanged by them (``configs/pipeline_laser_quickstart.yaml``
names ``stages: [laser, laser_baseline, self_verify, report]``).

* ``laser`` takes ``train laser`` options; ``model`` defaults to ``policy``, ``out`` and
  ``self_reward: on`` are filled in. Without ``c_ref`` the stage measures it on the starting model
  into ``laser/c_ref.json``.
* ``laser_baseline`` takes the ``laser`` section's options, then its own section's on top (usually
  empty), with ``self_reward: off``: the baseline differs from LaSeR in nothing else.
* ``self_verify`` takes ``eval self-verify`` options plus ``score_base`` (also score the starting
  model). The policy's problems, arith settings (merged key by key with the section's ``arith``),
  prompt style, z_c, beta_v and token budget default to the training run's, on *new* problems of that
  kind; c_ref is the section's, else the laser section's, else the one measured into
  ``laser/c_ref.json``, the same for every policy. When the StepWiser ``judge`` stage is part of the
  run and the section names no ``verifier``, the trained judge (``judge/final``, asked as the
  downstream stages ask it) scores the same responses for comparison.

The report gets one table with a row per policy (accuracy, self-verification F1 all / filtered,
AUROC, ECE, weighted vote vs majority vote with all n samples; one more row per policy for the
external verifier when there is one), a training table, and the training curves and voting plots.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stepjudge.pipeline.registry import Panels, PipelineConfig, StageContext, Table, register_stage
from stepjudge.pipeline.report import dig, fmt, load_json
from stepjudge.pipeline.stepwiser import judge_spec  # also: StepWiser's stages are registered before these
from stepjudge.utils.io import atomic_write_json

log = logging.getLogger(__name__)

__all__ = ["POLICY_NAMES", "laser_config", "laser_baseline_config", "self_verify_configs", "eval_c_ref"]

# self_verify's policies, in report order: the starting model, the GRPO baseline, LaSeR.
POLICY_NAMES = {"base": "starting model", "grpo": "GRPO baseline", "laser": "LaSeR"}
_TRAINED = {"grpo": "laser_baseline", "laser": "laser"}  # policy -> the stage (and folder) that trains it


# ------------------------------------------------------------------ stage configs
def _section(cfg: PipelineConfig, stage: str) -> dict[str, Any]:
    return dict(cfg.section(stage)) if cfg.has_section(stage) else {}


def laser_config(cfg: PipelineConfig, out: Path):
    """The laser stage's ``LaserConfig``: the section over ``model: policy``, LaSeR on, its own folder."""
    from stepjudge.train.laser_run import LaserConfig

    return LaserConfig(**{"model": cfg.policy, **_section(cfg, "laser"), "self_reward": "on",
                          "out": str(out / "laser")})


def laser_baseline_config(cfg: PipelineConfig, out: Path):
    """The baseline's ``LaserConfig``: the laser section, then its own overrides, self-reward off."""
    from stepjudge.train.laser_run import LaserConfig

    return LaserConfig(**{"model": cfg.policy, **_section(cfg, "laser"), **_section(cfg, "laser_baseline"),
                          "self_reward": "off", "out": str(out / "laser_baseline")})


def _policies(cfg: PipelineConfig, out: Path) -> dict[str, str]:
    """{policy name: model} for self_verify: the start (with score_base) and each policy this run trains."""
    policies = {"base": cfg.policy} if _section(cfg, "self_verify").get("score_base", False) else {}
    for name in ("grpo", "laser"):
        if _TRAINED[name] in cfg.stages:
            policies[name] = str(out / _TRAINED[name] / "final")
    return policies


def _training(cfg: PipelineConfig, out: Path):
    """The run config the evaluated policies were trained with (LaSeR's, else the baseline's)."""
    if "laser" in cfg.stages or "laser_baseline" not in cfg.stages:
        return laser_config(cfg, out)
    return laser_baseline_config(cfg, out)


def self_verify_configs(cfg: PipelineConfig, out: Path) -> dict[str, Any]:
    """{policy name: ``SelfVerifyConfig``} with the training run's settings filled in (c_ref left as
    the section gives it: the measured one is known only once the laser stage ran)."""
    from stepjudge.eval.self_verify_run import SelfVerifyConfig

    section = _section(cfg, "self_verify")
    score_base = section.pop("score_base", False)
    if not isinstance(score_base, bool):
        raise ValueError(f"self_verify.score_base: true or false expected, got {score_base!r}")
    train = _training(cfg, out)
    base: dict[str, Any] = {
        "engine": cfg.engine.model_dump(), "problems": train.train_data, "data_root": train.data_root,
        "prompt_style": train.prompt_style, "z_c_token_id": train.z_c_token_id, "beta_v": train.beta_v,
        "max_tokens": train.max_completion_length, "c_ref": train.c_ref}
    if "judge" in cfg.stages and "verifier" not in section:  # the run's own StepWiser judge, asked as downstream
        base.update(verifier=str(out / "judge" / "final"), verifier_spec=judge_spec(cfg),
                    verifier_engine=cfg.engine.model_dump())
    arith = {**train.arith.model_dump(), **section.pop("arith", {})}
    configs = {}
    for name, model in _policies(cfg, out).items():
        configs[name] = SelfVerifyConfig(**{**base, **section, "arith": arith, "model": model,
                                            "out": str(out / "self_verify" / name)})
    if not configs:
        raise ValueError("self_verify: no policy to evaluate (add laser or laser_baseline to `stages`, "
                         "or set self_verify.score_base)")
    return configs


def eval_c_ref(cfg: PipelineConfig, out: Path) -> float:
    """c_ref for scoring every policy: self_verify's, else the laser section's, else the measured one."""
    given = next(iter(self_verify_configs(cfg, out).values())).c_ref
    if given is not None:
        return float(given)
    measured = out / "laser" / "c_ref.json"
    if measured.exists():
        return float(json.loads(measured.read_text(encoding="utf-8"))["mean"])
    raise ValueError("self_verify: no c_ref: set self_verify.c_ref or laser.c_ref, or run the laser stage "
                     f"first (it measures c_ref into {measured})")


# ------------------------------------------------------------------ results, tables, headline
def _train_summary(folder: Path) -> dict[str, Any] | None:
    """A training run's update count and run means from its ``train_log.json`` (None before it ran)."""
    entries = load_json(folder / "train_log.json")
    if entries is None:
        return None

    def mean(key: str) -> float | None:
        xs = [e[key] for e in entries if isinstance(e.get(key), (int, float))]
        return statistics.fmean(xs) if xs else None

    c_ref = load_json(folder / "c_ref.json")
    return {"updates": max((e.get("step", 0) for e in entries), default=0), "reward_mean": mean("reward"),
            "self_reward_accuracy_mean": mean("laser/self_reward_accuracy"), "mse_mean": mean("laser/mse"),
            "c_ref_measured": None if c_ref is None else c_ref["mean"]}


def _self_verify_results(out: Path) -> dict[str, Any]:
    summary = load_json(out / "self_verify" / "summary.json")
    return {"self_verify": summary}


def _at_n(metrics: Mapping[str, Any], key: str) -> Any:
    votes = dig(metrics, f"voting.{key}")
    return votes[-1] if votes else None


def _row(label: str, m: Mapping[str, Any], accuracy: Any, n: Any) -> list[str]:
    return [label, fmt(accuracy), fmt(dig(m, "f1_all.f1")), fmt(dig(m, "f1_filtered.f1")),
            "n/a" if m.get("auroc") is None else f"{m['auroc']:.3f}", "n/a" if m.get("ece") is None else
            f"{m['ece']:.3f}", fmt(_at_n(m, "weighted")), fmt(_at_n(m, "majority")), fmt(n)]


_SV_HEADER = ["policy", "accuracy (%)", "self-verif. F1 all", "F1 filtered", "AUROC", "ECE",
              "weighted vote (%)", "majority vote (%)", "samples"]


def _train_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    runs = {name: results.get(stage) for name, stage in _TRAINED.items() if results.get(stage)}
    if not runs:
        return []
    rows = [[POLICY_NAMES[name], fmt(r["updates"]), fmt(r["reward_mean"]), fmt(r["self_reward_accuracy_mean"]),
             fmt(r["mse_mean"])] for name, r in runs.items()]
    images = [f"{_TRAINED[name]}/curves.png" for name in runs if (out / _TRAINED[name] / "curves.png").exists()]
    return [("LaSeR training (means over the logged updates)",
             ["policy", "updates", "train reward r_v", "self-reward accuracy", "self-reward MSE"], rows, images)]


def _self_verify_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    tables: list[Table] = []
    sv = results.get("self_verify")
    if sv:
        rows = []
        for name, m in sv["policies"].items():
            label = POLICY_NAMES.get(name, name)
            rows.append(_row(f"{label}: self-reward", m, m.get("accuracy"), m.get("n_samples")))
            if m.get("verifier"):
                rows.append(_row(f"{label}: verifier `{m['verifier']['model']}`", m["verifier"], m.get("accuracy"),
                                 m.get("n_samples")))
        first = next(iter(sv["policies"].values()))
        k = (first.get("voting") or {}).get("k") or [None]
        title = (f"LaSeR self-verification on {first.get('n_problems')} new problems x {k[-1]} samples "
                 f"(c_ref {fmt(sv.get('c_ref'), 3)}; votes use all {k[-1]} samples)")
        images = [f"self_verify/{name}/voting.png" for name in sv["policies"]
                  if (out / "self_verify" / name / "voting.png").exists()]
        tables.append((title, _SV_HEADER, rows, images))
    return tables


def _laser_headline(results: Mapping[str, Any]) -> Panels:
    sv = results.get("self_verify")
    if not sv:
        return {}
    pols = {POLICY_NAMES.get(k, k): v for k, v in sv["policies"].items()}
    return {"held-out accuracy (%)": {k: v.get("accuracy") or 0.0 for k, v in pols.items()},
            "self-verification F1 (all)": {k: dig(v, "f1_all.f1") or 0.0 for k, v in pols.items()}}


# ------------------------------------------------------------------ the stages
@register_stage(
    "laser", build=laser_config, optional=True, decides_results=True,
    done=("laser/final/model.safetensors", "laser/train_log.json"),
    section_help="`stepjudge train laser` options (optional stage; model defaults to `policy`, out and "
                 "self_reward: on are filled in; without c_ref it is measured into laser/c_ref.json)",
    results=lambda out: {"laser": _train_summary(out / "laser")}, tables=_train_tables)
def _run_laser(ctx: StageContext) -> None:
    from stepjudge.train.laser_run import train_laser

    train_laser(laser_config(ctx.config, ctx.out))


@register_stage(
    "laser_baseline", build=laser_baseline_config, optional=True, decides_results=True,
    done=("laser_baseline/final/model.safetensors", "laser_baseline/train_log.json"),
    section_help="the plain-GRPO baseline: the `laser` section's options with these on top (usually none) and "
                 "self_reward: off (optional stage)",
    results=lambda out: {"laser_baseline": _train_summary(out / "laser_baseline")})
def _run_laser_baseline(ctx: StageContext) -> None:
    from stepjudge.train.laser_run import train_laser

    train_laser(laser_baseline_config(ctx.config, ctx.out))


@register_stage(
    "self_verify", build=self_verify_configs, optional=True, done=("self_verify/summary.json",),
    section_help="`stepjudge eval self-verify` options for every policy this run trains, plus score_base (also "
                 "score the starting model); problems, prompt, z_c, beta_v, token budget and c_ref default to "
                 "the training run's, on new problems; the run's StepWiser judge is the verifier when the "
                 "judge stage is part of the run (optional stage)",
    results=_self_verify_results, tables=_self_verify_tables, headline=_laser_headline)
def _run_self_verify(ctx: StageContext) -> None:
    """Score each policy once (a policy whose metrics.json exists is not scored again), then summarize."""
    from stepjudge.eval.self_verify_run import run_self_verify

    c_ref = eval_c_ref(ctx.config, ctx.out)
    policies: dict[str, Any] = {}
    for name, cfg in self_verify_configs(ctx.config, ctx.out).items():
        path = Path(cfg.out) / "metrics.json"
        if not path.exists():
            log.info("pipeline: self-verification of %s (%s)", name, cfg.model)
            run_self_verify(cfg.model_copy(update={"c_ref": c_ref}))
        metrics = json.loads(path.read_text(encoding="utf-8"))
        policies[name] = {k: v for k, v in metrics.items() if k != "calibration"}
    atomic_write_json(ctx.out / "self_verify" / "summary.json", {"c_ref": c_ref, "policies": policies})
