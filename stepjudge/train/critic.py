"""Critique-RL on the RL core: a critic trained in two RL stages with TRL's RLOOTrainer (spec §3).

Stage I optimises discrimination only (:func:`~stepjudge.train.critique_rl.discrimination_reward`,
registered as ``critique_dis``) with a KL penalty to the starting (SFT) critic. Stage II starts from the
Stage-I checkpoint and keeps a KL penalty to it (TRL builds the reference model from the model it
starts from), and pays for helpfulness: the frozen actor refines each (x, y) with the critique, inside
the reward (:class:`~stepjudge.train.critique_rl.RefinementReward`), and the critique earns
r_refine + 0.2 when its verdict is right, -1 otherwise; ``stage2_reward`` swaps in the indirect baselines.

The released code switches the reward server's stage at a training step inside one run; here each stage
is its own run folder (``out/stage1``, ``out/stage2``), so the switch is ``stage1_steps`` and the Stage-II
reference is exactly the Stage-I result. A stage whose ``final/`` and ``train_log.json`` exist is done
and skipped on a re-run; an interrupted stage resumes from its newest checkpoint.

Paper settings are the defaults (§3(d)): RLOO with 4 critiques per (x, y), lr 5e-7, KL 0.01, T 0.7,
2 inner epochs (``num_iterations``), critiques up to 1536 tokens, 500 steps per stage. OpenRLHF's
``--normalize_reward`` is approximated by TRL's ``normalize_advantages``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from stepjudge.data.records import check_chat_messages
from stepjudge.engines.factory import EngineConfig
from stepjudge.errors import DataError
from stepjudge.train.core import RLRunConfig, build_rl_trainer, is_main_process, read_rows, train_to_final
from stepjudge.train.critique_rl import Stage2Reward
from stepjudge.train.report import Panels
from stepjudge.train.rewards import resolve_rewards

log = logging.getLogger(__name__)

__all__ = ["CRITIC_PANELS", "CriticRLConfig", "critique_data_once", "load_critic_rows", "make_stage_trainer",
           "sft_once", "train_critic", "trained"]

CRITIC_PANELS: Panels = (
    ("reward (mean)", ("reward",)),
    ("Acc@Dis / Acc@Refine (rollout)", ("critique/acc_dis", "critique/acc_refine")),
    ("refinement transitions (share)", ("critique/c2c", "critique/c2i", "critique/i2c", "critique/i2i")),
    ("final verdict shares", ("critique/verdict_correct_share", "critique/verdict_wrong_share",
                              "critique/verdict_missing_share")),
    ("critique length (tokens)", ("critique/length",)),
    ("KL to the stage's start", ("kl",)),
)


class CriticRLConfig(RLRunConfig):
    """Every knob of ``stepjudge train critic``; batch sizes count critiques, as in TRL."""

    trl_fields: ClassVar[tuple[str, ...]] = ("num_iterations", "normalize_advantages")

    model: str = Field("smollm2-135m", description="critic to start from (the SFT critic): name, path or hub id")
    train_data: str = Field(description='JSONL rows of `stepjudge critique-data` (rl_rows.jsonl): {"prompt": '
                                        '[critic messages], "truth": bool, "response": str, "problem_json": str}')
    out: str = Field(description="run folder: stage1/ and stage2/ (each with final/, train_log.json, curves.png), "
                                 "summary.json")
    rewards: list[str] = Field(default_factory=lambda: ["critique_dis"],
                               description="Stage-I rewards (summed): critique_dis = +1 right verdict, -1 wrong or "
                                           "missing; or 'package.module:function'")
    stage1_steps: int = Field(500, ge=0, description="optimizer steps of Stage I (discrimination); 0 = skip it")
    stage2_steps: int = Field(500, ge=0, description="optimizer steps of Stage II (refinement); 0 = skip it")
    stage2_reward: Stage2Reward = Field(
        "critique_rl", description="Stage-II reward: critique_rl (-1 wrong/missing verdict, else r_refine + bonus); "
                                   "the indirect baselines refine (r_refine), delta (r(y') - r(y)), correction")
    dis_bonus: float = Field(0.2, description="Stage II: added to r_refine when the verdict is right (paper beta_1)")
    stage2_start: str | None = Field(
        None, description="critic Stage II starts from and keeps its KL to; None = this run's stage1/final, or "
                          "`model` when stage1_steps is 0")
    actor: EngineConfig = Field(default_factory=EngineConfig,
                                description="the frozen actor that writes Stage II's refinements (greedy)")
    refine_max_tokens: int = Field(1024, ge=1, description="tokens of each Stage-II refinement; paper 1024")
    grade_timeout_s: float = Field(5.0, gt=0, description="seconds allowed to grade one refinement")
    num_iterations: int = Field(2, ge=1, description="policy updates per rollout batch (paper: 2 inner epochs)")
    normalize_advantages: bool = Field(True, description="normalise RLOO advantages over the batch (the released "
                                                         "code's --normalize_reward)")
    learning_rate: float = Field(5e-7, gt=0, description="optimizer learning rate; paper 5e-7")
    beta: float = Field(0.01, ge=0, description="KL coefficient to the stage's start model; paper 0.01")
    temperature: float = Field(0.7, gt=0, description="critique sampling temperature; paper 0.7")
    epsilon_high: float = Field(0.2, gt=0, description="upper clip; 0.2 = symmetric PPO clip as in OpenRLHF")
    max_prompt_length: int = Field(2048, ge=8, description="longer critic prompts are dropped; paper 2048")
    max_completion_length: int = Field(1536, ge=1, description="critique tokens; paper 1536")

    @model_validator(mode="after")
    def _stage_steps(self) -> CriticRLConfig:
        if self.max_steps != -1:
            raise ValueError("set stage1_steps / stage2_steps; max_steps is per stage and not a setting here")
        if self.stage1_steps == 0 and self.stage2_steps == 0:
            raise ValueError("both stages have 0 steps: nothing to train")
        return self


def load_critic_rows(path: str) -> list[dict]:
    """Critic RL rows, checked (file:line field on errors) before any model loads."""
    def parse(rec: dict, line: int) -> dict:
        check_chat_messages(rec.get("prompt"), path=path, line=line, field="prompt")
        if not isinstance(rec.get("truth"), bool):
            raise DataError("expected true/false (is the response correct)", path=path, line=line, field="truth")
        for key in ("response", "problem_json"):
            if not isinstance(rec.get(key), str):
                raise DataError("expected a string", path=path, line=line, field=key)
        return {k: rec[k] for k in ("prompt", "truth", "response", "problem_json")}

    return read_rows(path, parse, empty="no critic RL rows")


def trained(folder: str | Path) -> bool:
    """Whether a training run folder is finished (``final/`` and ``train_log.json`` written)."""
    return (Path(folder) / "final").is_dir() and (Path(folder) / "train_log.json").exists()


_done = trained


def critique_data_once(options: dict[str, Any], actor: str, out: str | Path) -> Path:
    """``critique-data`` with ``options`` and the actor model ``actor`` into ``out``, unless its stats.json exists.

    One step of the Critique-RL chain (bootstrap data with the base actor, then the SFT actor's pool), shared
    by the pipeline stages and experiments/critique_rl_cpu.py.
    """
    from stepjudge.judge.critique_data import build_critique_data

    out = Path(out)
    if not (out / "stats.json").exists():
        build_critique_data({**options, "actor": {**options.get("actor", {}), "model": actor}, "out": str(out)})
    return out


def sft_once(options: dict[str, Any], data: str | Path, out: str | Path, *, model: str, seed: int) -> str:
    """Chat prompt-completion SFT (``train segment``) of ``model`` on ``data`` into ``out`` unless it is finished;
    returns the final model's path. The actor (solve + refine rows) and the critic are SFT'd this way."""
    from stepjudge.train.segment import SegmentSFTConfig, train_segment

    out = Path(out)
    if not trained(out):
        train_segment(SegmentSFTConfig(**{"model": model, **options, "data": str(data), "out": str(out),
                                          "seed": seed}))
    return str(out / "final")


def make_stage_trainer(cfg: CriticRLConfig, stage: int, rows: list[dict], reward_funcs: list[Any]) -> Any:
    """The RLOO trainer of one stage: its own folder, step count and start model (the KL reference)."""
    from trl import RLOOConfig, RLOOTrainer

    out = Path(cfg.out) / f"stage{stage}"
    if stage == 1:
        start, steps = cfg.model, cfg.stage1_steps
    else:
        start = cfg.stage2_start or (str(Path(cfg.out) / "stage1" / "final") if cfg.stage1_steps else cfg.model)
        steps = cfg.stage2_steps
    stage_cfg = cfg.model_copy(update={"out": str(out), "max_steps": steps, "model": start})
    return build_rl_trainer(stage_cfg, trainer_cls=RLOOTrainer, args_cls=RLOOConfig, reward_funcs=reward_funcs,
                            train_rows=rows)


def _last(log_history: list[dict], key: str) -> float | None:
    values = [e[key] for e in log_history if key in e]
    return values[-1] if values else None


def train_critic(config: CriticRLConfig | dict) -> dict[str, str]:
    """Run Stage I then Stage II (each skipped when its steps are 0 or it is already done).

    Returns ``{"stage1": final path, "stage2": final path}`` for the stages run or found; writes
    ``out/summary.json`` with the last logged Acc@Dis / Acc@Refine of each stage.
    """
    import json

    from stepjudge.engines.factory import make_engine
    from stepjudge.grading import Grader
    from stepjudge.train.critique_rl import RefinementReward
    from stepjudge.utils.io import atomic_write_json

    cfg = config if isinstance(config, CriticRLConfig) else CriticRLConfig(**config)
    rows = load_critic_rows(cfg.train_data)
    out = Path(cfg.out)
    finals: dict[str, str] = {}
    if cfg.stage1_steps:
        folder = out / "stage1"
        if not _done(folder):
            trainer = make_stage_trainer(cfg, 1, rows, resolve_rewards(cfg.rewards))
            train_to_final(trainer, folder, "critic Stage I", panels=CRITIC_PANELS)
        finals["stage1"] = str(folder / "final")
    if cfg.stage2_steps:
        folder = out / "stage2"
        if not _done(folder):
            with make_engine(cfg.actor) as actor, Grader(timeout_s=cfg.grade_timeout_s) as grader:
                reward = RefinementReward(actor, grader, kind=cfg.stage2_reward, bonus=cfg.dis_bonus,
                                          max_tokens=cfg.refine_max_tokens, seed=cfg.seed)
                trainer = make_stage_trainer(cfg, 2, rows, [reward])
                train_to_final(trainer, folder, "critic Stage II", panels=CRITIC_PANELS)
        finals["stage2"] = str(folder / "final")
    summary: dict[str, Any] = {"stage2_reward": cfg.stage2_reward}
    for stage, final in finals.items():
        history = json.loads((Path(final).parent / "train_log.json").read_text())
        summary[stage] = {"final": final, "steps": max((e.get("step", 0) for e in history), default=0),
                          **{k: _last(history, f"critique/{k}") for k in ("acc_dis", "acc_refine", "i2c", "c2i")}}
    if is_main_process():
        atomic_write_json(out / "summary.json", summary)
    return finals
