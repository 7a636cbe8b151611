"""Adaptive Monte-Carlo rollouts: the stopping rule on hand-made counts, and the annotation it drives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stepjudge.annotate.labels import assign_labels, certain_label, prefixes_needing_rollouts, q_bounds
from stepjudge.annotate.pipeline import AnnotateConfig, annotate
from stepjudge.engines.base import Completion, GenerationResult
from stepjudge.engines.hf import HFEngine
from stepjudge.tasks.arith import generate_problems

# ---------------------------------------------------------------------------------- the rule, by hand


def test_q_bounds_hold_every_value_the_prefix_can_end_at():
    assert q_bounds(3, 5, 16) == (3 / 16, 14 / 16)
    assert q_bounds(3, 5, 16, closed=True) == (3 / 5, 3 / 5)
    assert q_bounds(4, 16, 16) == (0.25, 0.25)
    lo, hi = q_bounds(3, 5, 16)
    for d in range(5, 17):  # any later early stop w'/d' stays inside
        for w in range(3, 3 + d - 5 + 1):
            assert lo <= w / d <= hi
    with pytest.raises(ValueError):
        q_bounds(6, 5, 16)
    with pytest.raises(ValueError):
        q_bounds(0, 0, 4, closed=True)


def _first_certain(successes: list[int], m: int, before: float, scheme: str, **kw) -> tuple[int, int | None]:
    """Rollouts drawn one at a time (1 = success): (rollouts used, the label) at the first certain label."""
    wins = 0
    for d, s in enumerate(successes, start=1):
        wins += s
        lab = certain_label(q_bounds(wins, d, m), before, scheme=scheme, **kw)
        if lab is not None:
            return d, lab
    return len(successes), None


def test_abs_q_is_decided_by_the_first_success_and_negative_only_at_m():
    assert _first_certain([0, 0, 1, 0], 16, 0.5, "abs-q") == (3, 1)
    assert _first_certain([1], 16, 0.0, "abs-q") == (1, 1)
    assert _first_certain([0] * 15, 16, 0.5, "abs-q") == (15, None)
    assert _first_certain([0] * 16, 16, 0.5, "abs-q") == (16, 0)


def test_rel_ratio_with_a_known_value_before():
    # Q before 0.5, gamma 0.7: positive iff Q after > 0.35; certain positive at 6 wins (6/16 = 0.375),
    # certain negative at 11 failures ((16 - 11)/16 = 0.3125 <= 0.35; 10 failures leave 0.375)
    assert _first_certain([1] * 6, 16, 0.5, "rel-ratio") == (6, 1)
    assert _first_certain([1, 0] * 6, 16, 0.5, "rel-ratio") == (11, 1)
    assert _first_certain([0] * 10, 16, 0.5, "rel-ratio") == (10, None)
    assert _first_certain([0] * 11, 16, 0.5, "rel-ratio") == (11, 0)
    assert _first_certain([0, 1] + [0] * 10, 16, 0.5, "rel-ratio") == (12, 0)
    # before 0: positive iff after > 0, as Abs-Q
    assert _first_certain([0, 0, 1], 16, 0.0, "rel-ratio") == (3, 1)


def test_rel_effective_with_a_known_value_before():
    # before 0.5, alpha 0.8, n 4: Q + 0.8 * ((1 - (1 - Q)^4) - 0.9375) > 0 iff Q > ~0.2178; 4/16 = 0.25
    # decides Positive; Negative needs the upper end (w + 16 - d)/16 <= 0.2178, i.e. 13 failures
    assert _first_certain([1] * 4, 16, 0.5, "rel-effective") == (4, 1)
    assert _first_certain([0] * 12, 16, 0.5, "rel-effective") == (12, None)
    assert _first_certain([0] * 13, 16, 0.5, "rel-effective") == (13, 0)
    for w in range(17):  # the decided label is the label of every completion
        lab = certain_label(q_bounds(w, 16, 16), 0.5, scheme="rel-effective")
        assert lab == assign_labels([w / 16], q_init=0.5, scheme="rel-effective")[0]


def test_an_uncertain_value_before_keeps_the_label_open():
    # after: 6 of 8 drawn won, M 16 -> [0.375, 0.875]; before [0.25, 0.75]: ratio 0.5 .. 3.5 -> open
    assert certain_label(q_bounds(6, 8, 16), q_bounds(4, 8, 16), scheme="rel-ratio") is None
    # the same after, before known to be 0.25: ratio >= 1.5 -> Positive
    assert certain_label(q_bounds(6, 8, 16), 0.25, scheme="rel-ratio") == 1
    # a negative gamma breaks monotonicity: only points are decided
    assert certain_label((0.5, 0.6), 0.5, scheme="rel-ratio", gamma=-1.0) is None
    assert certain_label((0.5, 0.5), (0.5, 0.5), scheme="rel-ratio", gamma=-1.0) == 1


def test_which_prefixes_need_rollouts():
    open3 = [False] * 3
    # Abs-Q, M 4, one rollout each: the bare problem is never needed; chunk 2's first rollout won
    assert prefixes_needing_rollouts([0, 0, 1], [1, 1, 1], 4, closed=open3, scheme="abs-q") == [False, True, False]
    # at M everything is done
    assert prefixes_needing_rollouts([0, 0, 4], [4, 4, 4], 4, closed=open3, scheme="abs-q") == [False] * 3
    # Rel-Ratio: prefix 1 is "after" of chunk 1 and "before" of chunk 2. Chunk 1 is decided Positive (prefix 0
    # closed at 0.25, prefix 1 in [0.75, 1]: ratio >= 3), chunk 2 is open (after [0.25, 1] over before
    # [0.75, 1]: ratio 0.25 .. 1.33), so prefix 1 is still needed as a "before" and prefix 2 as an "after"
    need = prefixes_needing_rollouts([1, 3, 1], [4, 3, 1], 4, closed=[True, False, False], scheme="rel-ratio")
    assert need == [False, True, True]
    # Stop after the first certain Negative: chunk 1 certainly Negative under Abs-Q -> chunk 2 not needed
    assert prefixes_needing_rollouts([0, 0, 0], [1, 4, 1], 4, closed=[True, False, False], scheme="abs-q",
                                     stop_after_negative=True) == [False, False, False]
    assert prefixes_needing_rollouts([0, 0, 0], [1, 4, 1], 4, closed=[True, False, False],
                                     scheme="abs-q") == [False, False, True]
    with pytest.raises(ValueError):
        prefixes_needing_rollouts([0, 0], [1], 4, closed=[False, False], scheme="abs-q")


# ----------------------------------------------------------------------------- annotation, tiny model

PROBLEM = generate_problems(n=1, steps=2, seed=0)[0]
# Chunk 2 carries the right boxed answer, so every rollout from its prefix is graded correct; the tiny
# random model's own continuations never box the answer, so the other prefixes score 0.
SOLUTION = (f"<chunk>Start with {PROBLEM.meta['values'][0]} and guess.</chunk>\n"
            f"<chunk>So the result is \\boxed{{{PROBLEM.answer}}}.</chunk>\n\\boxed{{{PROBLEM.answer}}}")
BASE = dict(problems="arith", arith={"n": 1, "steps": 2, "seed": 0}, policy="tiny-random", samples_per_problem=2,
            sample_max_tokens=32, rollouts=4, rollout_max_tokens=6, group_size=1, seed=0)


class ScriptedSamples(HFEngine):
    """The real tiny model for the rollouts; its K solutions are scripted, because the random tiny model
    never writes chunks and annotation needs some to roll out from."""

    def __init__(self) -> None:
        super().__init__("tiny-random", num_threads=1)
        self.rollout_calls: list[tuple[int, int]] = []  # (prompts, n) of each rollout call

    def generate(self, prompts, params, *, on_tokens=None):
        if params.max_tokens == BASE["sample_max_tokens"]:
            return [GenerationResult([Completion(SOLUTION, 20, "stop")] * params.n) for _ in prompts]
        self.rollout_calls.append((len(prompts), params.n))
        return super().generate(prompts, params, on_tokens=on_tokens)


def _run(tmp_path: Path, name: str, **kw) -> tuple[list[dict], ScriptedSamples]:
    torch.set_num_threads(1)
    engine = ScriptedSamples()
    annotate(AnnotateConfig(**{**BASE, **kw, "out": str(tmp_path / name)}), engine=engine, progress=False)
    recs = [json.loads(x) for x in (tmp_path / name / "annotations.jsonl").read_text().splitlines()]
    return recs, engine


def _without_adaptive_fields(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in ("rollouts_used", "rollout")}


def test_adaptive_that_cannot_stop_early_equals_fixed_m(tmp_path):
    fixed, fe = _run(tmp_path, "fixed")
    adaptive, ae = _run(tmp_path, "adaptive", adaptive={"first_round": 4, "round": 1, "scheme": "rel-effective"})
    assert fe.rollout_calls == ae.rollout_calls == [(6, 4)]  # one call: 2 solutions x 3 prefixes, n = M
    assert [_without_adaptive_fields(r) for r in adaptive] == [_without_adaptive_fields(r) for r in fixed]
    assert all(r["rollouts_used"] == [4, 4, 4] for r in adaptive)
    assert fixed[0]["rollout_successes"] == [0, 0, 4] and fixed[0]["rollout"]["adaptive"] is False
    assert adaptive[0]["rollout"]["adaptive"] == {"scheme": "rel-effective", "round": 1, "first_round": 4,
                                                  "stop_after_negative": False}
    assert json.loads((tmp_path / "fixed" / "report.json").read_text())["compute"]["rollouts"] == 2 * 12


def test_adaptive_abs_q_stops_each_prefix_once_its_label_is_certain(tmp_path):
    recs, engine = _run(tmp_path, "absq", adaptive={"round": 1, "scheme": "abs-q"})
    again, _ = _run(tmp_path, "absq2", adaptive={"round": 1, "scheme": "abs-q"})
    assert recs == again  # deterministic under the seed
    # round 0: every prefix once (2 solutions x 3 prefixes); then only prefix 1 of each, to M
    assert engine.rollout_calls == [(6, 1), (2, 1), (2, 1), (2, 1)]
    for r in recs:
        assert r["rollouts_used"] == [1, 4, 1] and r["rollout_successes"] == [0, 0, 1]
        assert r["q_init"] == 0.0 and r["q"] == [0.0, 1.0] and r["rollouts"] == 6
        assert r["labels"]["abs-q"] == [0, 1]
    summary = json.loads((tmp_path / "absq" / "report.json").read_text())
    assert summary["compute"]["rollouts"] == 12  # against 24 with fixed M


def test_stop_after_negative_cuts_the_later_chunks(tmp_path):
    recs, _ = _run(tmp_path, "cut", adaptive={"round": 1, "scheme": "abs-q", "stop_after_negative": True})
    for r in recs:
        assert r["chunks"] == [f"Start with {PROBLEM.meta['values'][0]} and guess."]
        assert r["chunks_cut"] == [f"So the result is \\boxed{{{PROBLEM.answer}}}."]
        assert r["answer_text"] is None
        assert r["rollouts_used"] == [1, 4] and r["rollout_successes"] == [0, 0] and r["q"] == [0.0]
        assert r["labels"]["abs-q"] == [0] and len(r["labels"]["rel-ratio"]) == 1
        assert r["truth"]["first_error"] in (-1, 0)  # the truth of the kept chunks


def test_annotation_key_of_a_fixed_m_run_is_unchanged_and_adaptive_changes_it():
    import hashlib

    from stepjudge.annotate.groups import RESUME_KEYS, annotation_key

    base = AnnotateConfig(problems="arith", rollouts=4, out="runs/a")
    dumped = base.model_dump(mode="json")
    before = json.dumps({k: dumped[k] for k in RESUME_KEYS if k != "adaptive"}, sort_keys=True)
    assert annotation_key(base) == hashlib.sha256(before.encode()).hexdigest()[:16]  # caches stay valid
    assert "adaptive" in RESUME_KEYS
    assert annotation_key(AnnotateConfig(problems="arith", rollouts=4, out="runs/a", adaptive={"round": 2})) != annotation_key(base)
