"""Critique-RL's comparison on CPU (issue 14, item 6): does two-stage RL make a better critic than SFT?

    python experiments/critique_rl_cpu.py --config experiments/critique_rl_cpu.yaml --seeds 0 1 2

Steps (each skipped when its output exists, so a killed run continues where it stopped):

1. ``out/bootstrap``: ``critique-data`` with the base actor (its truth critiques and worked solutions are the
   actor's SFT data); ``out/actor-sft``: the actor SFT'd to solve and to refine (shared by all seeds; the actor
   is frozen in the paper).
2. ``out/data``: ``critique-data`` with the SFT actor: its response pool, critic SFT rows, critic RL rows.
3. per seed ``out/seed{S}/``: ``critic-sft`` (SFT on critic_sft.jsonl), ``rl`` (Stage I then Stage II),
   ``rl-indirect`` (Stage II from the same Stage I with ``indirect_reward``).
4. per seed and arm, ``refine`` on new problems (the actor answers greedily; one round) -> ``eval/{arm}``.

Arms: no-critic (the actor alone), sft-critic, stage1, stage1+2, stage2-<indirect_reward>. ``table.md`` and
``results.json`` hold mean ± sd over the seeds of Acc, Acc@Refine, Δ, Δc→i, Δi→c, Acc@Dis.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from common import experiment_config, experiment_parser
from pydantic import BaseModel, ConfigDict, Field

from stepjudge.train.critic import critique_data_once, sft_once
from stepjudge.utils.io import atomic_write_json, atomic_write_text

METRICS = ("acc", "acc_refine", "delta", "delta_c2i", "delta_i2c", "acc_dis")


class ExperimentConfig(BaseModel):
    """Every knob of the experiment (YAML keys = these names); sections are the verbs' own options."""

    model_config = ConfigDict(extra="forbid")

    out: str = Field("runs/exp/critique_rl_cpu", description="run folder")
    model: str = Field("smollm2-135m", description="base model of the actor and the critic")
    data: dict[str, Any] = Field(default_factory=dict, description="`critique-data` options (both data passes)")
    actor_sft: dict[str, Any] = Field(default_factory=dict, description="`train segment` options of the actor SFT")
    critic_sft: dict[str, Any] = Field(default_factory=dict, description="`train segment` options of the critic SFT")
    critic: dict[str, Any] = Field(default_factory=dict, description="`train critic` options")
    indirect_reward: str = Field("refine", description="Stage-II reward of the indirect arm: refine|delta|correction")
    refine: dict[str, Any] = Field(default_factory=dict, description="`refine` options of the evaluation")


def _evaluate(cfg: ExperimentConfig, actor: str, critic: str, out: Path, seed: int) -> dict[str, Any]:
    from stepjudge.infer.refine import run_refine

    summary = out / "summary.json"
    if summary.exists():
        import json

        return json.loads(summary.read_text())["overall"]
    return run_refine({**cfg.refine, "actor": {**cfg.refine.get("actor", {}), "model": actor},
                       "critic": {**cfg.refine.get("critic", {}), "model": critic}, "out": str(out),
                       "seed": seed})["overall"]


def run_seed(cfg: ExperimentConfig, seed: int, actor: str, data: Path) -> dict[str, dict[str, Any]]:
    """Every arm of one seed: its critics trained, then evaluated with the same actor on the same problems."""
    from stepjudge.train.critic import train_critic

    root = Path(cfg.out) / f"seed{seed}"
    sft = sft_once(cfg.critic_sft, data / "critic_sft.jsonl", root / "critic-sft", model=cfg.model, seed=seed)
    base = {**cfg.critic, "train_data": str(data / "rl_rows.jsonl"), "seed": seed,
            "actor": {**cfg.critic.get("actor", {}), "model": actor}}
    finals = train_critic({**base, "model": sft, "out": str(root / "rl")})
    indirect = train_critic({**base, "model": sft, "out": str(root / "rl-indirect"), "stage1_steps": 0,
                             "stage2_start": finals["stage1"], "stage2_reward": cfg.indirect_reward})
    critics = {"sft-critic": sft, "stage1": finals["stage1"], "stage1+2": finals["stage2"],
               f"stage2-{cfg.indirect_reward}": indirect["stage2"]}
    results = {arm: _evaluate(cfg, actor, critic, root / "eval" / arm, seed) for arm, critic in critics.items()}
    results["no-critic"] = {"acc": results["sft-critic"]["acc"]}  # the same greedy responses, not refined
    return results


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def table(per_seed: dict[int, dict[str, dict[str, Any]]]) -> str:
    """Markdown: one row per arm, mean ± sd over the seeds of every metric."""
    arms = list(next(iter(per_seed.values())))
    arms = ["no-critic", *[a for a in arms if a != "no-critic"]]
    lines = ["| arm | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for arm in arms:
        cells = [_mean_sd([r[arm][m] for r in per_seed.values() if r[arm].get(m) is not None]) for m in METRICS]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nseeds: {sorted(per_seed)}; percentages; Δc→i / Δi→c over the whole set.\n"


def main(argv: list[str] | None = None) -> int:
    parser = experiment_parser(__doc__, ExperimentConfig, default_seeds=(0, 1, 2))
    args = parser.parse_args(argv)
    cfg = experiment_config(args)
    out = Path(cfg.out)
    boot = critique_data_once(cfg.data, cfg.model, out / "bootstrap")
    actor = sft_once(cfg.actor_sft, boot / "actor_sft.jsonl", out / "actor-sft", model=cfg.model, seed=0)
    data = critique_data_once(cfg.data, actor, out / "data")
    per_seed = {s: run_seed(cfg, s, actor, data) for s in args.seeds}
    atomic_write_json(out / "results.json", {str(s): r for s, r in per_seed.items()})
    atomic_write_text(out / "table.md", table(per_seed))
    print(table(per_seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
