"""LaSeR's CPU comparison: does last-token self-rewarding give a policy a self-verifier, at no accuracy cost?

    python experiments/laser_cpu.py --config experiments/laser_cpu.yaml --seeds 0 1 2

Per seed, two arms from the same start, steps and data: ``grpo`` (``self_reward: off``) and ``laser``
(``self_reward: on``); plus ``base`` (the starting model, scored once). Every policy is evaluated on the
same new problems with ``stepjudge eval self-verify`` (held-out accuracy, self-verification F1 all /
filtered, AUROC, ECE, weighted vs majority vote). One folder per seed and arm (``out/seed{S}/{arm}``);
a step whose output exists is skipped, so a killed run continues. c_ref is measured once on the base
model (``out/c_ref.json``) and shared by every run. Outputs: ``table.md`` and ``results.json`` (mean ±
sd over seeds), ``rs_hist.png`` (r_s per class, per arm) and ``curves.png`` (training curves).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from common import experiment_config, experiment_parser
from pydantic import BaseModel, ConfigDict, Field

from stepjudge.utils.io import atomic_write_json, atomic_write_text, read_jsonl

ARMS = ("grpo", "laser")


class ExperimentConfig(BaseModel):
    """Every knob of the experiment (YAML keys = these names)."""

    model_config = ConfigDict(extra="forbid")

    out: str = Field("runs/exp/laser_cpu", description="run folder")
    model: str = Field("smollm2-135m", description="the starting policy")
    train: dict[str, Any] = Field(default_factory=dict, description="`train laser` options shared by both arms")
    eval: dict[str, Any] = Field(default_factory=dict, description="`eval self-verify` options for every policy")
    score_base: bool = Field(True, description="also evaluate the starting model")


def _c_ref(cfg: ExperimentConfig, out: Path) -> float:
    from stepjudge.train.laser_run import LaserConfig, calibrate_c_ref

    path = out / "c_ref.json"
    if "c_ref" in cfg.train and cfg.train["c_ref"] is not None:
        return float(cfg.train["c_ref"])
    if not path.exists():
        atomic_write_json(path, calibrate_c_ref(LaserConfig(**{**cfg.train, "model": cfg.model, "out": str(out)})))
    return float(json.loads(path.read_text())["mean"])


def _evaluate(cfg: ExperimentConfig, model: str, c_ref: float, out: Path) -> dict:
    from stepjudge.eval.self_verify_run import run_self_verify

    if not (out / "metrics.json").exists():
        run_self_verify({**cfg.eval, "model": model, "c_ref": c_ref, "out": str(out)})
    return json.loads((out / "metrics.json").read_text())


def run_arm(arm: str, cfg: ExperimentConfig, seed: int, c_ref: float, out: Path) -> dict:
    from stepjudge.train.laser_run import train_laser

    run = out / f"seed{seed}" / arm
    if not (run / "final" / "model.safetensors").exists():
        train_laser({**cfg.train, "model": cfg.model, "out": str(run), "seed": seed, "c_ref": c_ref,
                     "self_reward": "on" if arm == "laser" else "off"})
    return _evaluate(cfg, str(run / "final"), c_ref, run / "self-verify")


def _get(m: dict, path: str) -> float | None:
    for part in path.split("."):
        m = m.get(part) if isinstance(m, dict) else None
    return m  # type: ignore[return-value]


def _mean_sd(values: list[float | None]) -> str:
    xs = [v for v in values if v is not None]
    if not xs:
        return "n/a"
    return f"{statistics.fmean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


COLUMNS = (("accuracy", "accuracy"), ("F1 all", "f1_all.f1"), ("F1 filtered", "f1_filtered.f1"),
           ("acc on correct", "f1_all.acc_correct"), ("acc on incorrect", "f1_all.acc_incorrect"),
           ("AUROC x100", "auroc"), ("ECE x100", "ece"), ("weighted vote @n", "weighted"),
           ("majority @n", "majority"))


def _value(m: dict, key: str) -> float | None:
    if key in ("weighted", "majority"):
        return m["voting"][key][-1]
    v = _get(m, key)
    return 100 * v if key in ("auroc", "ece") and v is not None else v


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| arm | seeds | " + " | ".join(c for c, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for arm, ms in results.items():
        lines.append(f"| {arm} | {len(ms)} | " + " | ".join(_mean_sd([_value(m, k) for m in ms]) for _, k in COLUMNS)
                     + " |")
    return "\n".join(lines) + "\n"


def plot_histograms(out: Path, seeds: list[int], arms: list[str]) -> None:
    """r_s of finished held-out samples per class, one panel per arm (all seeds pooled)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(arms), 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, arm in zip(fig.subplots(1, len(arms), squeeze=False).ravel(), arms, strict=True):
        folders = [out / "base" / "self-verify"] if arm == "base" else \
            [out / f"seed{s}" / arm / "self-verify" for s in seeds]
        rows = [r for f in folders if (f / "samples.jsonl").exists() for r in read_jsonl(f / "samples.jsonl")
                if r["finished"]]
        for label, want in (("correct", True), ("incorrect", False)):
            ax.hist([r["r_s"] for r in rows if r["correct"] == want], bins=30, alpha=0.6, label=label)
        ax.axvline(0.5, color="grey", linestyle="--")
        ax.set(title=f"{arm}: r_s of held-out samples", xlabel="r_s")
        ax.legend(fontsize=8)
    fig.savefig(out / "rs_hist.png", dpi=90)


def plot_training(out: Path, seeds: list[int]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = ("reward", "laser/self_reward_accuracy", "laser/mse")
    fig = Figure(figsize=(13, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, key in zip(fig.subplots(1, len(keys)), keys, strict=True):
        for arm in ARMS:
            for s in seeds:
                path = out / f"seed{s}" / arm / "train_log.json"
                if path.exists():
                    pts = [(e["step"], e[key]) for e in json.loads(path.read_text()) if key in e]
                    if pts:
                        ax.plot(*zip(*pts, strict=True), label=f"{arm} s{s}")
        ax.set(title=key, xlabel="update")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.savefig(out / "curves.png", dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = experiment_parser(__doc__, ExperimentConfig)
    args = parser.parse_args(argv)
    cfg = experiment_config(args)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    c_ref = _c_ref(cfg, out)
    results: dict[str, list[dict]] = {}
    if cfg.score_base:
        results["base"] = [_evaluate(cfg, cfg.model, c_ref, out / "base" / "self-verify")]
    for seed in args.seeds:
        for arm in ARMS:
            results.setdefault(arm, []).append(run_arm(arm, cfg, seed, c_ref, out))
    atomic_write_json(out / "results.json", {"c_ref": c_ref, "seeds": args.seeds, "config": cfg.model_dump(),
                                             "results": {a: [{k: v for k, v in m.items() if k != "calibration"}
                                                             for m in ms] for a, ms in results.items()}})
    atomic_write_text(out / "table.md", table(results))
    plot_histograms(out, args.seeds, list(results))
    plot_training(out, args.seeds)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
