"""Critique-RL's stages (spec §3; docs/critique_rl.md), each declared once with ``register_stage``.

============== =============================================== ==========================================
stage          what                                            done when
============== =============================================== ==========================================
critique_data  ``critique-data`` with the base actor (policy):  critique_data/stats.json
               its truth critiques and worked solutions are
               the actor's SFT rows
actor_sft      the actor SFT'd to solve and to refine          actor_sft/final/ and train_log.json
critic_data    ``critique-data`` again with the SFT actor: its critic_data/stats.json
               response pool, critic SFT rows, critic RL rows
critic_sft     the critic SFT'd on critic_data's critiques     critic_sft/final/ and train_log.json
critic_stage1  Stage I (RLOO, discrimination reward, KL to     critic_stage1/summary.json
               the SFT critic)
critic_stage2  Stage II (refinement reward through the frozen  critic_stage2/summary.json
               SFT actor, KL to the Stage-I critic)
critique_eval  ``eval critique`` of each critic with the SFT   critique_eval/summary.json
               actor on new problems (greedy loop; MV@K /
               Pass@K vs parallel sampling for
               ``sample_critics``)
============== =============================================== ==========================================

This is experiments/critique_rl_cpu.py's chain for one seed, as stages (both use
:func:`~stepjudge.train.critic.critique_data_once`, :func:`~stepjudge.train.critic.sft_once` and
:func:`~stepjudge.train.critic.train_critic`). Every stage is optional: a StepWiser config is unchanged, and
a Critique-RL config names its stages in ``stages`` (configs/pipeline_critique_quickstart.yaml). The actor
is ``policy`` and the critic starts from ``judge_base`` (default: policy). Each section takes the options of
the stage's own command: ``critique_data`` those of ``critique-data`` (``critic_data`` reuses them),
``actor_sft`` / ``critic_sft`` those of ``train segment``, ``critic_stage1`` those of ``train critic`` (its
``stage1_steps`` is the stage's length) and ``critic_stage2`` too (keys not given there are taken from
``critic_stage1``; its length is ``stage2_steps``), ``critique_eval`` those of ``eval critique`` plus
``critics`` and ``sample_critics``. The builders fill in the paths between stages. A later stage uses an
earlier stage's model when that stage is part of the run or already finished in the folder, else the
base model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stepjudge.pipeline import stepwiser  # noqa: F401  (StepWiser's stages register first: the run order)
from stepjudge.pipeline.registry import Panels, PipelineConfig, StageContext, Table, register_stage
from stepjudge.pipeline.report import fmt, load_json
from stepjudge.utils.io import atomic_write_json

__all__ = ["CRITICS", "actor_model", "critic_models", "critic_stage_cfg", "critique_eval_cfgs"]

CRITICS = {"critic_sft": "SFT critic", "critic_stage1": "Stage I", "critic_stage2": "Stage I + II"}
"""The critics ``critique_eval`` can evaluate: stage name -> its label in the report."""

_METRICS = (("acc", "Acc"), ("acc_refine", "Acc@Refine"), ("delta", "Δ"), ("delta_c2i", "Δc→i"),
            ("delta_i2c", "Δi→c"), ("acc_dis", "Acc@Dis"))


def _section(cfg: PipelineConfig, stage: str) -> dict[str, Any]:
    return dict(cfg.section(stage)) if cfg.has_section(stage) else {}


def _used(cfg: PipelineConfig, out: Path, stage: str, final: str) -> bool:
    """Whether a later stage should use ``stage``'s model: it is part of this run or finished in ``out``."""
    return stage in cfg.stages or (out / final).exists()


def _engine(cfg: PipelineConfig, section: Mapping[str, Any], key: str, model: str) -> dict[str, Any]:
    return {**cfg.engine.model_dump(), **section.get(key, {}), "model": model}


def actor_model(cfg: PipelineConfig, out: Path) -> str:
    """The frozen actor of every later stage: actor_sft's final model, else the policy."""
    final = "actor_sft/final"
    return str(out / final) if _used(cfg, out, "actor_sft", final) else cfg.policy


def critic_models(cfg: PipelineConfig, out: Path) -> dict[str, str]:
    """Each trained critic's final model, for the critic stages that are part of the run or finished."""
    finals = {"critic_sft": "critic_sft/final", "critic_stage1": "critic_stage1/stage1/final",
              "critic_stage2": "critic_stage2/stage2/final"}
    return {s: str(out / f) for s, f in finals.items() if _used(cfg, out, s, f)}


# ------------------------------------------------------------------ stage configs
def _data_cfg(cfg: PipelineConfig, out: Path, stage: str, actor: str):
    from stepjudge.judge.critique_data import CritiqueDataConfig

    section = _section(cfg, "critique_data")
    return CritiqueDataConfig(**{**section, "actor": _engine(cfg, section, "actor", actor), "out": str(out / stage)})


def _sft_cfg(cfg: PipelineConfig, out: Path, stage: str, data: Path, model: str):
    from stepjudge.train.segment import SegmentSFTConfig

    return SegmentSFTConfig(**{"model": model, **_section(cfg, stage), "data": str(data), "out": str(out / stage)})


def critic_stage_cfg(cfg: PipelineConfig, out: Path, stage: int):
    """``train critic`` settings of Stage I (``stage`` 1) or Stage II (2): the other stage's steps are 0."""
    from stepjudge.train.critic import CriticRLConfig

    section = _section(cfg, "critic_stage1")
    if stage == 2:
        section = {**section, **_section(cfg, "critic_stage2")}
    critics = critic_models(cfg, out)
    start = critics.get("critic_sft", cfg.judge_base or cfg.policy)
    filled: dict[str, Any] = {"model": start, "train_data": str(out / "critic_data" / "rl_rows.jsonl"),
                              "actor": _engine(cfg, section, "actor", actor_model(cfg, out))}
    if stage == 1:
        filled.update(stage2_steps=0, out=str(out / "critic_stage1"))
    else:
        filled.update(stage1_steps=0, out=str(out / "critic_stage2"),
                      stage2_start=section.get("stage2_start") or critics.get("critic_stage1", start))
    return CriticRLConfig(**{**section, **filled})


def critique_eval_cfgs(cfg: PipelineConfig, out: Path) -> dict[str, Any]:
    """One ``eval critique`` config per evaluated critic (critique_eval/<critic>/); only ``sample_critics``
    sample the MV@K / Pass@K comparison (the others get k = 0)."""
    from stepjudge.eval.critique_run import CritiqueEvalConfig
    from stepjudge.tasks import new_problems_options

    section = _section(cfg, "critique_eval")
    models = critic_models(cfg, out)
    critics = section.pop("critics", list(models))
    if not critics:
        raise ValueError("critique_eval: no critic to evaluate (add critic_sft / critic_stage1 / critic_stage2 to "
                         "the stages, or name finished ones in critique_eval.critics)")
    sampled = section.pop("sample_critics", critics[-1:])
    unknown = sorted(set(critics) - set(CRITICS)) + sorted(set(sampled) - set(critics))
    if unknown:
        raise ValueError(f"critique_eval: unknown or unevaluated critics {unknown} (critics: {sorted(CRITICS)}; "
                         "sample_critics must be among critics)")
    missing = sorted(set(critics) - set(models))
    if missing:
        raise ValueError(f"critique_eval: critics {missing} are neither part of this run nor finished in {out}")
    base = {**new_problems_options(_section(cfg, "critique_data")), **section}
    actor = actor_model(cfg, out)
    return {c: CritiqueEvalConfig(**{**base, "actor": _engine(cfg, section, "actor", actor),
                                     "critic": _engine(cfg, section, "critic", models[c]),
                                     "out": str(out / "critique_eval" / c),
                                     **({} if c in sampled else {"k": 0})})
            for c in critics}


# ------------------------------------------------------------------ results, report sections and plot panels
def _eval_results(out: Path) -> dict[str, Any]:
    return {"critique_eval": load_json(out / "critique_eval" / "summary.json")}


def _data_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    stats = results.get("critique_data")
    if not stats:
        return []
    share = 100 * stats["correct_responses"] / stats["responses"] if stats["responses"] else None
    rows = [["questions (held out)", f"{stats['questions']} ({stats['heldout_questions']})"],
            ["actor responses in the RL pool (correct %)", f"{stats['responses']} ({fmt(share)})"],
            ["critic SFT critiques (from step truth / teacher kept)",
             f"{stats['truth_critiques']} / {stats['teacher_kept']}"],
            ["actor SFT rows of this pass (solve / refine)",
             f"{stats['actor_solve_rows']} / {stats['actor_refine_rows']}"]]
    return [("Critique-RL data (the SFT actor's pool)", ["", "value"], rows, [])]


def _training_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    rows, imgs = [], []
    for key, stage, label in (("critic_stage1", "stage1", "Stage I"), ("critic_stage2", "stage2", "Stage II")):
        s = (results.get(key) or {}).get(stage)
        if not s:
            continue
        rows.append([label, str(s["steps"]), *(fmt(None if s[k] is None else 100 * s[k]) for k in
                                                 ("acc_dis", "acc_refine", "i2c", "c2i"))])
        if (out / key / stage / "curves.png").exists():
            imgs.append(f"{key}/{stage}/curves.png")
    if not rows:
        return []
    return [("Critic RL (last logged rollout values, %)",
             ["stage", "steps", "Acc@Dis", "Acc@Refine", "i→c", "c→i"], rows, imgs)]


def _eval_tables(results: Mapping[str, Any], out: Path) -> list[Table]:
    ev = results.get("critique_eval")
    if not ev:
        return []
    arms = ev["critics"]
    first = next(iter(arms.values()))["greedy"]
    rows = [["no critic", fmt(first["overall"]["acc"]), *["–"] * (len(_METRICS) - 1)]]
    for name, arm in arms.items():
        greedy = arm["greedy"]
        rows.append([CRITICS[name], *(fmt(greedy["overall"][k]) for k, _ in _METRICS)])
        if len(greedy["rounds"]) > 1:
            rows += [[f"{CRITICS[name]}, round {i + 1}", *(fmt(m[k]) for k, _ in _METRICS)]
                     for i, m in enumerate(greedy["rounds"])]
    title = (f"Critique-RL evaluation: greedy response → critique → refinement on {first['items']} new problems "
             "(%, Δc→i / Δi→c over the whole set, Acc@Dis over parseable verdicts)")
    tables: list[Table] = [(title, ["critic", *(label for _, label in _METRICS)], rows, [])]
    budget_rows, imgs = [], []
    for name, arm in arms.items():
        sampling = arm.get("sampling")
        if not sampling:
            continue
        for c in sampling["refine"]:
            budget_rows += [[CRITICS[name], str(c["round"]), str(k), str(c["budget"][i]), fmt(c["mv"][i]),
                             fmt(c["parallel_mv"][i]), fmt(c["pass"][i]), fmt(c["parallel_pass"][i])]
                            for i, k in enumerate(c["k"])]
        if (out / "critique_eval" / name / "accuracy_vs_k.png").exists():
            imgs.append(f"critique_eval/{name}/accuracy_vs_k.png")
    if budget_rows:
        tables.append(("Critique-RL: refinement vs parallel sampling at equal budget (K chains after round r = "
                       "(1 + 2r) K generations per problem)",
                       ["critic", "round", "K", "budget", "MV@K refine", "MV parallel", "Pass@K refine",
                        "Pass parallel"], budget_rows, imgs))
    return tables


def _eval_headline(results: Mapping[str, Any]) -> Panels:
    ev = results.get("critique_eval")
    if not ev:
        return {}
    arms = ev["critics"]
    first = next(iter(arms.values()))["greedy"]["overall"]
    refine = {"no critic": first["acc"], **{CRITICS[n]: a["greedy"]["overall"]["acc_refine"] for n, a in arms.items()}}
    dis = {CRITICS[n]: a["greedy"]["overall"]["acc_dis"] for n, a in arms.items()
           if a["greedy"]["overall"]["acc_dis"] is not None}
    return {"Critique-RL Acc@Refine (%)": refine, **({"Critique-RL Acc@Dis (%)": dis} if dis else {})}


# ------------------------------------------------------------------ stages
_SFT_DONE = ("final/model.safetensors", "train_log.json")


@register_stage(
    "critique_data", optional=True, decides_results=True,
    build=lambda cfg, out: _data_cfg(cfg, out, "critique_data", cfg.policy), done=("critique_data/stats.json",),
    section_help="`stepjudge critique-data` options of both data passes (actor and out are filled in): this stage "
                 "with the base actor (policy) for the actor's SFT rows, critic_data with the SFT actor",
    results=lambda out: {"critique_bootstrap_data": load_json(out / "critique_data" / "stats.json")})
def _run_critique_data(ctx: StageContext) -> None:
    from stepjudge.train.critic import critique_data_once

    critique_data_once(_section(ctx.config, "critique_data"), ctx.config.policy, ctx.out / "critique_data")


@register_stage(
    "actor_sft", optional=True, decides_results=True, done=tuple(f"actor_sft/{f}" for f in _SFT_DONE),
    build=lambda cfg, out: _sft_cfg(cfg, out, "actor_sft", out / "critique_data" / "actor_sft.jsonl", cfg.policy),
    section_help="`stepjudge train segment` options of the actor's SFT (solve + refine rows of critique_data; "
                 "data and out are filled in, model defaults to policy)")
def _run_actor_sft(ctx: StageContext) -> None:
    from stepjudge.train.critic import sft_once

    c = _sft_cfg(ctx.config, ctx.out, "actor_sft", ctx.out / "critique_data" / "actor_sft.jsonl", ctx.config.policy)
    sft_once(c.model_dump(exclude={"data", "out"}), c.data, c.out, model=c.model, seed=c.seed)


@register_stage(
    "critic_data", optional=True, done=("critic_data/stats.json",),
    build=lambda cfg, out: _data_cfg(cfg, out, "critic_data", actor_model(cfg, out)),
    results=lambda out: {"critique_data": load_json(out / "critic_data" / "stats.json")}, tables=_data_tables)
def _run_critic_data(ctx: StageContext) -> None:
    from stepjudge.train.critic import critique_data_once

    critique_data_once(_section(ctx.config, "critique_data"), actor_model(ctx.config, ctx.out),
                       ctx.out / "critic_data")


def _critic_sft_cfg(cfg: PipelineConfig, out: Path):
    return _sft_cfg(cfg, out, "critic_sft", out / "critic_data" / "critic_sft.jsonl", cfg.judge_base or cfg.policy)


@register_stage(
    "critic_sft", optional=True, decides_results=True, done=tuple(f"critic_sft/{f}" for f in _SFT_DONE),
    build=_critic_sft_cfg,
    section_help="`stepjudge train segment` options of the critic's SFT (critic_data's critiques; data and out are "
                 "filled in, model defaults to judge_base, else policy)")
def _run_critic_sft(ctx: StageContext) -> None:
    from stepjudge.train.critic import sft_once

    c = _critic_sft_cfg(ctx.config, ctx.out)
    sft_once(c.model_dump(exclude={"data", "out"}), c.data, c.out, model=c.model, seed=c.seed)


@register_stage(
    "critic_stage1", optional=True, decides_results=True, build=lambda cfg, out: critic_stage_cfg(cfg, out, 1),
    done=("critic_stage1/summary.json",),
    section_help="`stepjudge train critic` options of Stage I (stage1_steps is its length; model, train data, "
                 "actor and out are filled in); critic_stage2 takes the keys it does not set from here",
    results=lambda out: {"critic_stage1": load_json(out / "critic_stage1" / "summary.json")})
def _run_critic_stage1(ctx: StageContext) -> None:
    from stepjudge.train.critic import train_critic

    train_critic(critic_stage_cfg(ctx.config, ctx.out, 1))


@register_stage(
    "critic_stage2", optional=True, decides_results=True, build=lambda cfg, out: critic_stage_cfg(cfg, out, 2),
    done=("critic_stage2/summary.json",),
    section_help="`stepjudge train critic` options of Stage II (stage2_steps is its length; unset keys come from "
                 "critic_stage1; it starts from and keeps its KL to the Stage-I critic)",
    results=lambda out: {"critic_stage2": load_json(out / "critic_stage2" / "summary.json")},
    tables=_training_tables)
def _run_critic_stage2(ctx: StageContext) -> None:
    from stepjudge.train.critic import train_critic

    train_critic(critic_stage_cfg(ctx.config, ctx.out, 2))


@register_stage(
    "critique_eval", optional=True, build=critique_eval_cfgs, done=("critique_eval/summary.json",),
    section_help="`stepjudge eval critique` options (actor, critic and out are filled in; problems default to new "
                 "ones of critique_data's kind), plus `critics` (default: every trained critic of the run) and "
                 "`sample_critics` (those that also run the MV@K / Pass@K comparison; default: the last critic)",
    results=_eval_results, tables=_eval_tables, headline=_eval_headline)
def _run_critique_eval(ctx: StageContext) -> None:
    from stepjudge.eval.critique_run import run_critique_eval

    summaries = {c: run_critique_eval(e, progress=ctx.progress)
                 for c, e in critique_eval_cfgs(ctx.config, ctx.out).items()}
    atomic_write_json(ctx.out / "critique_eval" / "summary.json",
                      {"actor": actor_model(ctx.config, ctx.out), "critics": summaries})

