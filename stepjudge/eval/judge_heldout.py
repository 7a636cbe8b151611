"""Judge accuracy on held-out chunks (StepWiser §4.1's "judge classification" view).

The held-out split of :func:`stepjudge.judge.dataset.build_judge_datasets` keeps its natural class mix,
so plain accuracy mostly rewards predicting the majority verdict. The headline number here is
therefore ``balanced_f1``: the harmonic mean of the per-class accuracies (percent), the same
construction as ProcessBench's F1, which is high only when the judge gets *both* classes right.

Two protocols:

* ``generative``: GRPO rows (``prompt`` = chat, ``label`` = verdict). The judge writes its analysis and
  a ``\\boxed{Positive|Negative}``; with ``votes > 1`` the majority of the sampled verdicts decides.
* ``discriminative``: SFT rows (``messages`` from ``to_discriminative_sft_rows``). Every assistant turn
  is one labelled chunk; the model sees the chat up to that chunk's user turn (earlier turns keep their
  *true* labels, as in training) and its first answer token must be ``+`` or ``-``.

A verdict that cannot be parsed counts as ``unparsed_as`` (default Positive: only an explicit
Negative flags an error) and is reported in ``unparsed_fraction`` so a format-breaking judge shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from stepjudge.engines.base import Engine, SamplingParams
from stepjudge.eval.metrics import auroc, harmonic_f1, subset_scores
from stepjudge.grading.extract import extract_verdict
from stepjudge.judge.verdicts import majority_verdict, parse_prm_verdict

__all__ = ["judge_metrics", "evaluate_judge_rows", "load_judge_rows", "calibrated_metrics", "first_error_scores", "first_error_f1", "first_error_from_verdicts",
           "predicted_first_errors"]

Verdict = Literal["Positive", "Negative"]
POSITIVE, NEGATIVE = "Positive", "Negative"
_PRM_TO_VERDICT = {"+": POSITIVE, "-": NEGATIVE}


def _as_verdict(label: Any) -> Verdict:
    """Labels come as verdict strings (GRPO rows), "+"/"-" (SFT rows) or 0/1 (annotations)."""
    if label in (POSITIVE, "+") or (not isinstance(label, str) and label in (1, True)):
        return POSITIVE
    if label in (NEGATIVE, "-") or (not isinstance(label, str) and label in (0, False)):
        return NEGATIVE
    raise ValueError(f"not a judge label: {label!r}")


def judge_metrics(labels: Sequence[Any], verdicts: Sequence[Verdict | None], *,
                  unparsed_as: Verdict = POSITIVE) -> dict:
    """Per-class and balanced scores (percent) of ``verdicts`` against ``labels``; None = unparsed.

    A class with no example has an undefined accuracy (None), and so has ``balanced_f1``.
    """
    if len(labels) != len(verdicts):
        raise ValueError(f"{len(labels)} labels but {len(verdicts)} verdicts")
    gold = [_as_verdict(x) for x in labels]
    pred = [unparsed_as if v is None else v for v in verdicts]
    n = len(gold)
    n_pos = sum(g == POSITIVE for g in gold)
    n_neg = n - n_pos
    hit_pos = sum(g == p == POSITIVE for g, p in zip(gold, pred, strict=True))
    hit_neg = sum(g == p == NEGATIVE for g, p in zip(gold, pred, strict=True))
    acc_pos = 100.0 * hit_pos / n_pos if n_pos else None
    acc_neg = 100.0 * hit_neg / n_neg if n_neg else None
    return {"n": n, "n_positive": n_pos, "n_negative": n_neg,
            "accuracy": 100.0 * (hit_pos + hit_neg) / n if n else None,
            "acc_positive": acc_pos, "acc_negative": acc_neg,
            "balanced_f1": harmonic_f1(acc_pos, acc_neg),
            "unparsed_fraction": sum(v is None for v in verdicts) / n if n else 0.0,
            "predicted_positive_fraction": sum(p == POSITIVE for p in pred) / n if n else 0.0}


def _generative(engine: Engine, rows: Sequence[Mapping], params: SamplingParams,
                response_prefix: str = "") -> list[dict]:
    from stepjudge.judge.scoring import prefill_answer

    prompts = prefill_answer(engine, [r["prompt"] for r in rows], response_prefix)
    results = engine.generate(prompts, params)  # one call: the engine batches
    preds = []
    for row, res in zip(rows, results, strict=True):
        votes = [extract_verdict(response_prefix + t) for t in res.texts]
        parsed = any(v is not None for v in votes)
        preds.append({"problem_id": row.get("problem_id"), "sample_index": row.get("sample_index"),
                      "chunk_index": row.get("chunk_index"), "label": _as_verdict(row["label"]),
                      "verdict": majority_verdict(votes) if parsed else None, "votes": votes,
                      "raw": res.texts})
    return preds


def _prefilled_probabilities(engine: Engine, rows: Sequence[Mapping], response_prefix: str) -> list[float]:
    from stepjudge.judge.scoring import positive_probabilities

    return positive_probabilities(engine, [r["prompt"] for r in rows], response_prefix)


def _reasoned_probabilities(engine: Engine, rows: Sequence[Mapping], preds: Sequence[Mapping],
                            verdict_prefix: str = "\\boxed{") -> list[float]:
    """P(Positive) at the verdict token after each row's first sampled analysis (see evaluate_judge_rows)."""
    from stepjudge.judge.scoring import TOKEN_PROB_NEEDS, positive_probabilities

    engine.require(*TOKEN_PROB_NEEDS, needed_for="P(Positive) after the judge's analysis")
    contexts = []
    for row, pred in zip(rows, preds, strict=True):
        analysis = pred["raw"][0]
        cut = analysis.rfind(verdict_prefix)
        contexts.append(engine.render(row["prompt"]) + (analysis[:cut] if cut >= 0 else analysis))
    return positive_probabilities(engine, contexts, verdict_prefix)


def _discriminative(engine: Engine, rows: Sequence[Mapping], params: SamplingParams) -> list[dict]:
    prompts, meta = [], []
    for r, row in enumerate(rows):
        msgs = row["messages"]
        chunk = 0
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            prompts.append([dict(x) for x in msgs[:i]])  # chat up to this chunk's user turn
            meta.append({"row": r, "problem_id": row.get("problem_id"), "sample_index": row.get("sample_index"),
                         "chunk_index": chunk, "label": _as_verdict(m["content"].strip()),
                         "prompt": prompts[-1]})
            chunk += 1
    results = engine.generate(prompts, params) if prompts else []
    preds = []
    for info, res in zip(meta, results, strict=True):
        text = res.texts[0]
        sign = parse_prm_verdict(text)
        preds.append({**info, "verdict": _PRM_TO_VERDICT.get(sign) if sign else None, "raw": [text]})
    return preds


def _prm_probabilities(engine: Engine, preds: list[dict]) -> list[float]:
    """P("+") / (P("+") + P("-")) at the PRM's answer token, read from one prefill per chunk."""
    from stepjudge.judge.scoring import TOKEN_PROB_NEEDS, _first_new_token, two_way_probabilities

    engine.require(*TOKEN_PROB_NEEDS, needed_for="a PRM's P(+)")
    prompts = [p["prompt"] for p in preds]
    if not prompts:
        return []
    context = engine.render(prompts[0])
    plus, minus = (_first_new_token(engine.tokenizer, context, sign) for sign in ("+", "-"))
    return two_way_probabilities(engine, prompts, plus, minus)


def evaluate_judge_rows(engine: Engine, rows: Sequence[Mapping], *,
                        protocol: Literal["generative", "discriminative"] = "generative", votes: int = 1,
                        temperature: float | None = None, max_tokens: int = 256, seed: int = 0,
                        unparsed_as: Verdict = POSITIVE, response_prefix: str = "",
                        probabilities: bool = False) -> dict:
    """Score a judge on held-out rows: :func:`judge_metrics` plus one prediction per judged chunk.

    ``response_prefix`` (generative only) pre-fills the start of the judge's answer, e.g. ``"\\boxed{"``
    for the verdict-only judge: the verdict is read from prefix + continuation.

    ``probabilities`` (generative, hf engine) also reads P(Positive) from the verdict token
    (:mod:`stepjudge.judge.scoring`) into each prediction's ``p_positive`` and reports ``auroc``: how well
    the judge *ranks* good above bad chunks, which a judge biased to one verdict can do even when its
    greedy F1 is 0. With a ``response_prefix`` ending right before the verdict it is read there; without
    one (a judge that reasons first) it is read after the judge's own first analysis, cut at its last
    ``\\boxed{`` (or at its end when it wrote none) + ``\\boxed{``: one extra prefill per row, no decoding.

    ``temperature`` defaults to greedy for one vote and 1.0 for several (identical greedy votes would
    make voting pointless). Discriminative mode always decodes greedily, 2 tokens, one sample: the
    PRM's answer is one symbol and its probability, not a sampled analysis, is what it was trained on.
    """
    if protocol == "generative":
        if votes < 1:
            raise ValueError(f"votes must be >= 1, got {votes}")
        temp = temperature if temperature is not None else (0.0 if votes == 1 else 1.0)
        params = SamplingParams(n=votes, temperature=temp, max_tokens=max_tokens, seed=seed)
        preds = _generative(engine, rows, params, response_prefix)
    elif protocol == "discriminative":
        preds = _discriminative(engine, rows, SamplingParams(n=1, temperature=0.0, max_tokens=2, seed=seed))
    else:
        raise ValueError(f"unknown protocol {protocol!r} (generative | discriminative)")
    metrics = judge_metrics([p["label"] for p in preds], [p["verdict"] for p in preds],
                            unparsed_as=unparsed_as)
    if probabilities:
        if protocol == "discriminative":
            probs = _prm_probabilities(engine, preds)
        elif response_prefix:
            probs = _prefilled_probabilities(engine, rows, response_prefix)
        else:
            probs = _reasoned_probabilities(engine, rows, preds)
        for p, prob in zip(preds, probs, strict=True):
            p["p_positive"] = prob
        metrics["auroc"] = auroc([p["label"] == POSITIVE for p in preds], [p["p_positive"] for p in preds])
    for p in preds:  # the decision actually scored, after the unparsed fallback
        p.pop("prompt", None)
        p["unparsed"] = p["verdict"] is None
        if p["verdict"] is None:
            p["verdict"] = unparsed_as
    return {**metrics, "protocol": protocol, "votes": votes if protocol == "generative" else 1,
            "predictions": preds}


def calibrated_metrics(engine: Engine, train_rows: Sequence[Mapping], heldout_preds: Sequence[Mapping],
                       response_prefix: str = "\\boxed{") -> dict:
    """Held-out scores with the P(Positive) cut fitted on the *train* rows (never on held-out data).

    A small judge's probabilities can rank chunks while sitting above 0.5 for all of them; this says
    how much of that ranking a fixed, train-chosen cut (:func:`stepjudge.judge.scoring.calibrate_threshold`)
    turns into right verdicts. ``heldout_preds`` are predictions with ``p_positive`` (from
    :func:`evaluate_judge_rows` with ``probabilities=True``).
    """
    from stepjudge.judge.scoring import calibrate_threshold, positive_probabilities

    probs = positive_probabilities(engine, [r["prompt"] for r in train_rows], response_prefix)
    labels = [_as_verdict(r["label"]) for r in train_rows]
    cut = calibrate_threshold(probs, [y == POSITIVE for y in labels])
    train = judge_metrics(labels, [POSITIVE if p >= cut else NEGATIVE for p in probs])
    held = judge_metrics([p["label"] for p in heldout_preds],
                         [POSITIVE if p["p_positive"] >= cut else NEGATIVE for p in heldout_preds])
    return {"threshold": cut, "train_balanced_f1": train["balanced_f1"], **held}


# ------------------------------------------------------------------------------- first-error F1


def first_error_from_verdicts(verdicts: Sequence[Verdict | None], *, unparsed_as: Verdict = POSITIVE) -> int:
    """Index of the first Negative chunk verdict, -1 if none (how a stepwise judge flags a solution)."""
    for i, v in enumerate(verdicts):
        if (unparsed_as if v is None else v) == NEGATIVE:
            return i
    return -1


def predicted_first_errors(predictions: Iterable[Mapping]) -> dict[tuple, int]:
    """{(problem_id, sample_index): predicted first error} from generative per-chunk predictions.

    Chunks of a solution are ordered by ``chunk_index``; a solution whose held-out chunks were partly
    dropped (length filter) is still scored on the chunks that remain.
    """
    by_sol: dict[tuple, list[tuple[int, Verdict | None]]] = {}
    for p in predictions:
        by_sol.setdefault((p["problem_id"], p["sample_index"]), []).append((p["chunk_index"], p["verdict"]))
    out = {}
    for key, items in by_sol.items():
        items.sort(key=lambda t: t[0])
        first = next((ci for ci, v in items if v == NEGATIVE), -1)
        out[key] = first
    return out


def _truth_of(rec: Any) -> int:
    if isinstance(rec, int) and not isinstance(rec, bool):
        return rec
    if isinstance(rec, Mapping):
        if isinstance(rec.get("truth"), Mapping):
            return int(rec["truth"]["first_error"])
        if "truth_first_error" in rec:
            return int(rec["truth_first_error"])
    raise ValueError(f"no true first error in {rec!r} (need truth.first_error, truth_first_error or an int)")


def first_error_f1(records_with_truth: Sequence[Any], predicted_first_errors: Sequence[int | None]) -> dict:
    """ProcessBench-style scores of predicted first-error indices against the true ones (-1 = none).

    ``records_with_truth`` items are ints or records with ``truth.first_error`` (arith annotations) or
    ``truth_first_error`` (judge examples). Returns n, n_error, n_correct, acc_error, acc_correct and
    their harmonic ``f1`` (percent); None as a prediction never matches.
    """
    if len(records_with_truth) != len(predicted_first_errors):
        raise ValueError(f"{len(records_with_truth)} records but {len(predicted_first_errors)} predictions")
    truths = [_truth_of(r) for r in records_with_truth]
    return subset_scores(zip(truths, predicted_first_errors, strict=True))


def first_error_scores(predictions: Iterable[Mapping], annotations: Iterable[Mapping], *,
                       threshold: float | None = None) -> dict:
    """arith: ProcessBench-style F1 of the judge's first Negative chunk per held-out solution against
    the solution's true first wrong chunk (``truth.first_error`` in ``stepjudge annotate`` records).

    ``threshold`` re-reads each chunk's verdict as ``p_positive >= threshold`` (a calibrated cut)
    instead of the greedy verdict. Solutions without a known truth are left out, and so are verdicts on
    answer segments (``judge-data --answer-rows``).
    """
    annotations = list(annotations)
    n_chunks = {(r["problem_id"], r.get("sample_index", 0)): len(r["chunks"]) for r in annotations
                if isinstance(r.get("chunks"), list)}
    # answer-segment rows (chunk_index = number of chunks) are not steps: ProcessBench's first error is a step
    preds = [dict(p) for p in predictions
             if p["chunk_index"] < n_chunks.get((p["problem_id"], p.get("sample_index", 0)), 1 << 30)]
    if threshold is not None:
        for p in preds:
            p["verdict"] = POSITIVE if p["p_positive"] >= threshold else NEGATIVE
    predicted = predicted_first_errors(preds)
    truth = {(r["problem_id"], r.get("sample_index", 0)): r for r in annotations
             if r.get("status", "annotated") == "annotated" and isinstance(r.get("truth"), Mapping)}
    keys = [k for k in predicted if k in truth]
    return {"solutions": len(keys), **first_error_f1([truth[k] for k in keys], [predicted[k] for k in keys])}


# ------------------------------------------------------------------ `stepjudge eval judge` as a run


# Imported here, not at the top, to keep this section self-contained (appended for the CLI).
from pydantic import BaseModel, ConfigDict, Field, model_validator  # noqa: E402

from stepjudge.engines.factory import EngineConfig  # noqa: E402


class HeldoutEvalConfig(BaseModel):
    """Every knob of ``stepjudge eval judge`` (YAML keys = these names)."""

    model_config = ConfigDict(extra="forbid")

    judge: str = Field(description="judge model: name/path (hf engine) or served model name (openai)")
    data: str = Field(description="held-out rows (heldout.jsonl of `stepjudge train judge-data`)")
    protocol: Literal["generative", "discriminative"] = Field(
        "generative", description="generative: verdict in \\boxed{}; discriminative: '+'/'-' PRM turns")
    votes: int = Field(1, ge=1, description="sampled verdicts per chunk, majority vote (1 = greedy)")
    max_tokens: int = Field(256, ge=1, description="judge output tokens per chunk (generative)")
    response_prefix: str = Field("", description="pre-filled start of the answer, e.g. '\\boxed{'")
    probabilities: bool = Field(
        False, description="also read P(Positive) from the verdict token after response_prefix and report "
                           "AUROC (hf engine)")
    calibrate_on: str | None = Field(
        None, description="with probabilities: also score held-out chunks at the P(Positive) cut that "
                          "maximises balanced accuracy on these (training) rows")
    annotations: str | None = Field(
        None, description="arith: also score the first Negative chunk of each held-out solution against its "
                          "true first wrong chunk (ProcessBench-style F1), from `stepjudge annotate` output")
    seed: int = Field(0, description="sampling seed")
    out: str | None = Field(None, description="folder for metrics.json and predictions.jsonl")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="engine settings; its model is `judge`")

    @model_validator(mode="after")
    def _calibration_needs_probabilities(self) -> HeldoutEvalConfig:
        if self.calibrate_on and not self.probabilities:
            raise ValueError("calibrate_on needs probabilities (--probabilities)")
        return self


_LABELS = (POSITIVE, NEGATIVE, "+", "-", 0, 1)


def _check_chat(value: Any, path: str, line: int, field: str) -> None:
    from stepjudge.errors import DataError

    if isinstance(value, str):
        if not value.strip():
            raise DataError("expected a non-empty prompt", path=path, line=line, field=field)
        return
    if not isinstance(value, list) or not value:
        raise DataError(f"expected a chat (a non-empty list of {{role, content}} messages) or a string, got "
                        f"{type(value).__name__}", path=path, line=line, field=field)
    for i, m in enumerate(value):
        if not (isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise DataError("expected a message {\"role\": str, \"content\": str}", path=path, line=line,
                            field=f"{field}[{i}]")


def load_judge_rows(path: str, protocol: Literal["generative", "discriminative"] = "generative", *,
                    what: str = "judge rows") -> list[dict]:
    """Rows of ``stepjudge train judge-data``, every one checked before a model runs on them.

    generative rows need ``prompt`` (a chat or a string) and ``label`` (Positive/Negative, "+"/"-" or
    1/0); discriminative rows need ``messages`` whose assistant turns are "+" or "-". An empty file, a bad
    line or field is a DataError naming the file, the line and the field.
    """
    from stepjudge.errors import DataError
    from stepjudge.utils.io import iter_jsonl

    rows = []
    for line, rec in iter_jsonl(path, what=what):
        if protocol == "generative":
            if "prompt" not in rec:
                raise DataError(f"missing field (the row has: {', '.join(rec) or 'none'}); generative rows need "
                                "prompt and label", path=str(path), line=line, field="prompt")
            _check_chat(rec["prompt"], str(path), line, "prompt")
            if "label" not in rec:
                raise DataError("missing field", path=str(path), line=line, field="label")
            if isinstance(rec["label"], bool) or rec["label"] not in _LABELS:
                raise DataError(f"expected Positive or Negative (or '+'/'-', 1/0), got {rec['label']!r:.40}",
                                path=str(path), line=line, field="label")
        else:
            if "messages" not in rec:
                raise DataError(f"missing field (the row has: {', '.join(rec) or 'none'}); discriminative rows "
                                "need messages", path=str(path), line=line, field="messages")
            _check_chat(rec["messages"], str(path), line, "messages")
            if isinstance(rec["messages"], str):
                raise DataError("expected a list of messages, got a string", path=str(path), line=line,
                                field="messages")
            for i, m in enumerate(rec["messages"]):
                if m["role"] == "assistant" and m["content"].strip() not in ("+", "-"):
                    raise DataError(f"an assistant turn must be '+' or '-', got {m['content']!r:.40}",
                                    path=str(path), line=line, field=f"messages[{i}].content")
        rows.append(rec)
    if not rows:
        raise DataError(f"{what}: the file holds no rows (expected one JSON object per line)", path=str(path))
    return rows


def evaluate_heldout(config: HeldoutEvalConfig, engine: Engine | None = None) -> dict:
    """``stepjudge eval judge``: score a judge on held-out rows (:func:`evaluate_judge_rows`), optionally
    with a train-fitted P(Positive) cut and arith first-error F1; writes ``metrics.json`` and
    ``predictions.jsonl`` to ``config.out`` (if set) and returns the metrics."""
    from pathlib import Path

    from stepjudge.utils.io import atomic_write_json, read_jsonl, write_jsonl_atomic

    # Every input is read and checked before the model runs and before anything is written.
    rows = load_judge_rows(config.data, config.protocol, what="held-out rows")
    calibration_rows = load_judge_rows(config.calibrate_on, what="calibration rows") if config.calibrate_on else None
    ann = read_jsonl(config.annotations, what="annotations") if config.annotations else None
    own = engine is None
    if engine is None:
        from stepjudge.engines.factory import make_engine

        engine = make_engine(config.engine.model_copy(update={"model": config.judge}))
    try:
        result = evaluate_judge_rows(engine, rows, protocol=config.protocol, votes=config.votes,
                                     max_tokens=config.max_tokens, seed=config.seed,
                                     response_prefix=config.response_prefix, probabilities=config.probabilities)
        if config.calibrate_on:
            result["calibrated"] = calibrated_metrics(engine, calibration_rows,
                                                      result["predictions"], config.response_prefix)
    finally:
        if own:
            engine.close()
    if ann is not None:
        result["first_error"] = first_error_scores(result["predictions"], ann)
        if "calibrated" in result:
            result["calibrated"]["first_error"] = first_error_scores(
                result["predictions"], ann, threshold=result["calibrated"]["threshold"])
    preds = result.pop("predictions")
    result.update(judge=config.judge, data=config.data, response_prefix=config.response_prefix)
    if config.out:
        atomic_write_json(Path(config.out) / "metrics.json", result)
        write_jsonl_atomic(Path(config.out) / "predictions.jsonl", preds)
    return result


def metrics_against_truth(rows: Sequence[Mapping], predictions: Sequence[Mapping]) -> dict | None:
    """:func:`judge_metrics` of the scored verdicts against each row's exact ``truth`` verdict (rows
    without one, e.g. chunks after a solution's first error, are left out); None if no row has one.

    Held-out labels are Monte-Carlo estimates; on a task with exact step truth (arith) this says how
    well a judge finds the real mistakes, whatever the label noise it was trained on.
    """
    if len(rows) != len(predictions):
        raise ValueError(f"{len(rows)} rows but {len(predictions)} predictions")
    pairs = [(row["truth"], pred["verdict"]) for row, pred in zip(rows, predictions, strict=True)
             if row.get("truth") is not None]
    if not pairs:
        return None
    truth, verdicts = zip(*pairs, strict=True)
    result = judge_metrics(list(truth), list(verdicts))
    if all("p_positive" in p for p in predictions):
        probs = [p["p_positive"] for row, p in zip(rows, predictions, strict=True) if row.get("truth") is not None]
        result["auroc"] = auroc([t == POSITIVE for t in truth], probs)
    return result
