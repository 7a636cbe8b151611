"""Judge training data built from chunk annotations (StepWiser §3.3, §4.1, App. A.1).

Every annotated chunk becomes one judge example: the prompt shows the problem, the earlier chunks
(history) and the chunk to judge; the target is that chunk's binary label under one labelling scheme.

Pipeline of :func:`build_judge_datasets`::

    annotations.jsonl -> load (status "annotated" only) -> one example per chunk
      -> split by *problem* (train / held-out; no problem in both, so held-out scores are not
         inflated by near-identical chunks of the same problem)
      -> drop prompts longer than ``max_prompt_tokens``
      -> balance the *train* split 50/50 by down-sampling the majority class

Why balance: labels are skewed (Abs-Q is ~70% positive in the paper) and an RL judge trained on
skewed prompts learns to always answer the majority verdict; the paper's "no prompt balancing"
ablation loses ~13 F1 points. The held-out split is never balanced: evaluation uses class-balanced
F1 (harmonic mean of the two per-class accuracies), which already weighs both classes equally, and
re-balancing would only throw held-out data away. Its class counts are reported in the stats.

Output formats (``format`` in the config):

* ``generative``: TRL GRPO conversational rows (``prompt`` = chat messages, ``label`` = verdict);
  columns other than ``prompt`` reach the reward function as keyword arguments.
* ``no-cot``: the same rows with a prompt that asks for the verdict only (the no-CoT ablation).
* ``discriminative``: one TRL SFT row per *solution*: a multi-turn chat with one user turn per chunk
  and a ``+``/``-`` assistant turn after each (the discriminative baseline). Train it with
  ``SFTConfig(assistant_only_loss=True)`` so only the ``+``/``-`` tokens carry loss; for templates
  without ``{% generation %}`` markers (SmolLM2) first set
  ``tokenizer.chat_template = chat_template_with_generation_markers(tokenizer)``. Class balancing
  is not applied to this format (a conversation cannot drop single turns without changing the
  history that later turns see); the stats still report its class counts.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stepjudge.engines.base import ChatMessages
from stepjudge.errors import DataError
from stepjudge.judge.prompts import NO_HISTORY, prm_messages, stepwise_judge_messages
from stepjudge.utils.io import atomic_write_json, iter_jsonl, write_jsonl_atomic

log = logging.getLogger(__name__)

Scheme = Literal["abs-q", "rel-ratio", "rel-effective", "truth"]
SCHEMES: tuple[str, ...] = ("abs-q", "rel-ratio", "rel-effective", "truth")
DatasetFormat = Literal["generative", "discriminative", "no-cot"]
POSITIVE, NEGATIVE = "Positive", "Negative"


class JudgeDatasetConfig(BaseModel):
    """Every knob of the judge dataset builder (YAML keys = these names)."""

    model_config = ConfigDict(extra="forbid")

    annotations: str | list[str] = Field(..., description="annotations.jsonl path(s) from `annotate`")
    scheme: Scheme = Field("rel-effective", description="which chunk labels become the targets: a Monte-Carlo "
                           "scheme, or truth (the task's exact step check, e.g. arith: chunks before the first "
                           "wrong one Positive, that one Negative, later ones left out) for upper-bound runs")
    balance: bool = Field(True, description="down-sample the train split's majority class to 50/50")
    heldout_fraction: float = Field(0.2, ge=0, le=1, description="share of *problems* held out")
    heldout_problems: int | None = Field(None, ge=0, description="exact number of held-out problems "
                                                                 "(overrides heldout_fraction)")
    max_prompt_tokens: int | None = Field(1024, ge=1, description="drop longer prompts (None: keep all)")
    tokenizer: str = Field("smollm2-135m", description="model whose tokenizer measures prompt length")
    seed: int = Field(0, description="seed of the held-out split and the down-sampling")
    format: DatasetFormat = Field("generative", description="generative (GRPO) | discriminative (SFT) | "
                                                            "no-cot (GRPO, verdict-only prompt)")
    answer_rows: bool = Field(False, description="also judge each solution's answer segment (the text after its "
                                                 "last chunk) as a final step, labelled by the graded outcome: a "
                                                 "judge that never saw one cannot vet answers in Chunk-Reset "
                                                 "(generative / no-cot formats)")

    @field_validator("annotations")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("give at least one annotations file")
        return v

    @property
    def annotation_paths(self) -> list[str]:
        return [self.annotations] if isinstance(self.annotations, str) else list(self.annotations)


# --------------------------------------------------------------------------------------- loading


def _check_label_list(labels: Any, scheme: str, n_chunks: int, path: str, line: int) -> list[int]:
    field = f"labels.{scheme}"
    if not isinstance(labels, dict):
        raise DataError("expected an object mapping scheme -> per-chunk labels", path=path, line=line,
                        field="labels")
    if scheme not in labels:
        raise DataError(f"no labels for scheme '{scheme}' (has: {', '.join(map(str, labels)) or 'none'})",
                        path=path, line=line, field=field)
    lab = labels[scheme]
    if not isinstance(lab, list) or any(isinstance(x, bool) or x not in (0, 1) for x in lab):
        raise DataError("expected a list of 0/1 labels", path=path, line=line, field=field)
    if len(lab) != n_chunks:
        raise DataError(f"{len(lab)} labels for {n_chunks} chunks (need one label per chunk)", path=path,
                        line=line, field=field)
    return [int(x) for x in lab]


def _validate_record(rec: dict, scheme: str, path: str, line: int) -> dict | None:
    """The record if it is usable, None if it was skipped by the annotator; DataError if broken."""
    status = rec.get("status")
    if not isinstance(status, str):
        raise DataError("missing or not a string", path=path, line=line, field="status")
    if status != "annotated":
        return None
    pid = rec.get("problem_id")
    if isinstance(pid, bool) or not isinstance(pid, (str, int)):
        raise DataError("missing or not a string/int", path=path, line=line, field="problem_id")
    if not isinstance(rec.get("problem"), str):
        raise DataError("missing or not a string", path=path, line=line, field="problem")
    chunks = rec.get("chunks")
    if not isinstance(chunks, list) or not chunks or not all(isinstance(c, str) for c in chunks):
        raise DataError("expected a non-empty list of strings", path=path, line=line, field="chunks")
    if "labels" not in rec:
        raise DataError("missing (an annotated record needs per-chunk labels)", path=path, line=line,
                        field="labels")
    _check_label_list(rec["labels"], scheme, len(chunks), path, line)
    si = rec.get("sample_index")
    if si is not None and (isinstance(si, bool) or not isinstance(si, int)):
        raise DataError("not an integer", path=path, line=line, field="sample_index")
    truth = rec.get("truth")
    if truth is not None and not (isinstance(truth, dict) and isinstance(truth.get("first_error"), int)):
        raise DataError("expected an object with an integer 'first_error'", path=path, line=line,
                        field="truth")
    return rec


def with_truth_labels(rec: dict, path: str = "", line: int | None = None) -> dict:
    """``rec`` cut after its true first wrong chunk, with ``labels["truth"]`` from the exact step check.

    Chunks after the first error are dropped: from a wrong history no verdict is exactly right, and
    ProcessBench-style scoring stops at the first error too. A record without ``truth`` is an error.
    """
    truth = rec.get("truth")
    if not (isinstance(truth, dict) and isinstance(truth.get("first_error"), int)):
        raise DataError("scheme 'truth' needs the task's exact step truth (truth.first_error)", path=path,
                        line=line, field="truth")
    if rec.get("status") != "annotated" or not isinstance(rec.get("chunks"), list):
        return rec
    first = truth["first_error"]
    chunks = rec["chunks"] if first < 0 else rec["chunks"][:first + 1]
    labels = [1] * len(chunks) if first < 0 else [1] * first + [0]
    return {**rec, "chunks": chunks, "labels": {**rec.get("labels", {}), "truth": labels}}


def load_annotations(paths: str | os.PathLike | Sequence[str | os.PathLike],
                     scheme: Scheme = "rel-effective") -> list[dict]:
    """Annotated records (status "annotated") from one or more files, validated for ``scheme``.

    Skipped solutions (no chunks, e.g. unparseable format) are left out silently: they carry no
    chunk labels. A record without ``sample_index`` gets its rank among its problem's solutions.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme '{scheme}' (choose from {', '.join(SCHEMES)})")
    path_list = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[dict] = []
    seen: set[tuple] = set()
    per_problem: dict[Any, int] = {}
    dups = 0
    for p in path_list:
        if not Path(p).exists():
            raise DataError("annotations file not found", path=str(p))
        for line, rec in iter_jsonl(p, what="annotations file"):
            if scheme == "truth" and rec.get("status") == "annotated":
                rec = with_truth_labels(rec, str(p), line)
            ok = _validate_record(rec, scheme, str(p), line)
            if ok is None:
                continue
            rank = per_problem.get(rec["problem_id"], 0)
            per_problem[rec["problem_id"]] = rank + 1
            if rec.get("sample_index") is None:
                rec = {**rec, "sample_index": rank}
            key = (rec["problem_id"], rec["sample_index"])
            dups += key in seen
            seen.add(key)
            out.append(rec)
    if not out:  # an empty input must not become empty splits that replace good ones
        raise DataError("no annotated solutions (records with status 'annotated' and chunk labels)",
                        path=", ".join(map(str, path_list)))
    if dups:  # legitimate when two runs share problems, but also what passing one file twice looks like
        log.warning("%d annotated solutions repeat a (problem_id, sample_index) seen earlier", dups)
    return out


# -------------------------------------------------------------------------------------- examples


def answer_truth(first_error: int | None, correct: bool) -> str | None:
    """The exact verdict of an answer segment: its graded outcome when every chunk before it is right,
    None after a wrong chunk (like any step after the first error) or without step truth."""
    if first_error is None or first_error >= 0:
        return None
    return POSITIVE if correct else NEGATIVE


def answer_example(rec: dict) -> dict | None:
    """The judge example of a solution's answer segment (None when it has none).

    Its label is the graded outcome, whatever the scheme: the Q value after a final answer is exactly
    1 or 0, and Abs-Q, Rel-Ratio and Rel-Effective all map Q = 1 to Positive and Q = 0 to Negative.
    """
    text = (rec.get("answer_text") or "").strip()
    if not text or not isinstance(rec.get("correct"), bool):
        return None
    chunks = rec["chunks"]
    ex = {"problem_id": rec["problem_id"], "sample_index": rec.get("sample_index", 0),
          "chunk_index": len(chunks), "step": "answer", "problem": rec["problem"], "history": list(chunks),
          "chunk": text, "prompt": stepwise_judge_messages(rec["problem"], chunks, text),
          "label": int(rec["correct"]), "verdict": POSITIVE if rec["correct"] else NEGATIVE}
    truth = rec.get("truth")
    if truth is not None:
        ex["truth_verdict"] = answer_truth(int(truth["first_error"]), rec["correct"])
    return ex


def chunk_examples(records: Iterable[dict], scheme: Scheme = "rel-effective", answers: bool = False) -> list[dict]:
    """One judge example per chunk: chunk ``i`` is judged with chunks ``0..i-1`` as its history; with
    ``answers`` one more per solution for its answer segment (:func:`answer_example`)."""
    out: list[dict] = []
    for rec in records:
        chunks = rec["chunks"]
        labels = rec.get("labels", {}).get(scheme)
        if labels is None or len(labels) != len(chunks):
            raise DataError(f"record of problem {rec.get('problem_id')!r} has no {scheme} label per chunk",
                            field=f"labels.{scheme}")
        truth = rec.get("truth")
        for i, (chunk, lab) in enumerate(zip(chunks, labels, strict=True)):
            ex = {"problem_id": rec["problem_id"], "sample_index": rec.get("sample_index", 0),
                  "chunk_index": i, "problem": rec["problem"], "history": list(chunks[:i]), "chunk": chunk,
                  "prompt": stepwise_judge_messages(rec["problem"], chunks[:i], chunk),
                  "label": int(lab), "verdict": POSITIVE if lab else NEGATIVE}
            if truth is not None:
                ex["truth_first_error"] = int(truth["first_error"])
            out.append(ex)
        ans = answer_example(rec) if answers else None
        if ans is not None and (scheme != "truth" or ans.get("truth_verdict") is not None):
            out.append(ans)  # the truth scheme keeps only answers with an exact verdict
    return out


def _is_positive(ex: dict) -> bool:
    lab = ex["label"]
    return lab in (POSITIVE, "+") if isinstance(lab, str) else bool(lab)


def class_counts(examples: Iterable[dict]) -> dict[str, int]:
    pos = neg = 0
    for ex in examples:
        if _is_positive(ex):
            pos += 1
        else:
            neg += 1
    return {"positive": pos, "negative": neg, "total": pos + neg}


def split_by_problem(examples: Sequence[dict], heldout_fraction: float = 0.2,
                     heldout_problems: int | None = None, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, heldout), holding out whole problems so no problem leaks into both.

    Problem ids are sorted, then shuffled with ``seed``: the split depends only on the set of ids and
    the seed, not on file order. The held-out count is ``heldout_problems`` if given, else
    ``round(heldout_fraction * n_problems)`` (halves round up). Examples keep their input order.
    """
    ids = sorted({ex["problem_id"] for ex in examples}, key=lambda x: (str(type(x)), x))
    if heldout_problems is not None:
        if heldout_problems > len(ids):
            raise ValueError(f"heldout_problems={heldout_problems} but only {len(ids)} problems have data")
        k = heldout_problems
    else:
        if not 0 <= heldout_fraction <= 1:
            raise ValueError(f"heldout_fraction must be in [0, 1], got {heldout_fraction}")
        k = int(heldout_fraction * len(ids) + 0.5)
    random.Random(seed).shuffle(ids)
    held = set(ids[:k])
    train = [ex for ex in examples if ex["problem_id"] not in held]
    heldout = [ex for ex in examples if ex["problem_id"] in held]
    return train, heldout


def balance_classes(examples: Sequence[dict], seed: int = 0) -> list[dict]:
    """Down-sample the majority class to the minority's size (StepWiser's 50/50 prompt balancing).

    The kept majority examples are drawn at random with ``seed`` and everything keeps its input
    order. If one class is empty the result is ``[]`` (with a warning): a judge trained with GRPO on
    a single class only learns to repeat that verdict, so there is nothing worth training on.
    """
    if not examples:
        return []
    pos = [i for i, ex in enumerate(examples) if _is_positive(ex)]
    neg = [i for i, ex in enumerate(examples) if not _is_positive(ex)]
    if not pos or not neg:
        log.warning("balance_classes: only %s examples (%d), no %s ones: returning no examples",
                    "positive" if pos else "negative", len(examples), "negative" if pos else "positive")
        return []
    minority, majority = (pos, neg) if len(pos) <= len(neg) else (neg, pos)
    kept = set(minority) | set(random.Random(seed).sample(majority, len(minority)))
    return [ex for i, ex in enumerate(examples) if i in kept]


# --------------------------------------------------------------------------------------- formats

VERDICT_ONLY_TEMPLATE = (
    "You check mathematical reasoning one chunk at a time. Given a math problem, the reasoning so far "
    "and one new chunk that continues it, decide whether the new chunk contains an explicit mistake, "
    "taking the problem and the earlier reasoning as given. A chunk with no computation that only "
    "restates or plans is fine.\n\n"
    "Do not explain. Reply with only \\boxed{{Positive}} if the new chunk has no mistake, or only "
    "\\boxed{{Negative}} if it has at least one.\n\n"
    "Mathematical Problem:\n{problem}\n\n"
    "Historical Reasoning Path:\n{history}\n\n"
    "New Reasoning Chunk:\n{chunk}")


def stepwise_verdict_only_messages(problem: str, history: Sequence[str], chunk: str) -> ChatMessages:
    """No-CoT judge prompt: same inputs as the StepWiser prompt, but the answer is the verdict alone."""
    hist = "\n\n".join(history) if history else NO_HISTORY
    return [{"role": "user", "content": VERDICT_ONLY_TEMPLATE.format(problem=problem, history=hist,
                                                                      chunk=chunk)}]


def truth_verdict(chunk_index: int, first_error: int | None) -> str | None:
    """The exact verdict of chunk ``chunk_index`` from a solution's true first wrong chunk (``-1``: none):
    Positive before it, Negative at it, None after it (a chunk that continues from a wrong history has
    no single right verdict) and None when the task has no step truth."""
    if first_error is None:
        return None
    if first_error < 0 or chunk_index < first_error:
        return POSITIVE
    return NEGATIVE if chunk_index == first_error else None


def _grpo_row(ex: dict, prompt: ChatMessages) -> dict:
    row = {"prompt": prompt, "label": POSITIVE if _is_positive(ex) else NEGATIVE,
           "problem_id": ex["problem_id"], "sample_index": ex.get("sample_index", 0),
           "chunk_index": ex["chunk_index"]}
    if ex.get("step") == "answer":
        row["step"] = "answer"
        truth = ex.get("truth_verdict")
    else:
        truth = truth_verdict(ex["chunk_index"], ex.get("truth_first_error"))
    if truth is not None:  # the exact verdict beside the Monte-Carlo label, so judges are scored on both
        row["truth"] = truth
    return row


def to_grpo_rows(examples: Iterable[dict]) -> list[dict]:
    """TRL GRPOTrainer rows (conversational ``prompt``); ``label`` is the verdict the reward checks."""
    return [_grpo_row(ex, ex["prompt"]) for ex in examples]


def to_no_cot_rows(examples: Iterable[dict]) -> list[dict]:
    """GRPO rows whose prompt asks for the verdict only (StepWiser's no-CoT ablation)."""
    return [_grpo_row(ex, stepwise_verdict_only_messages(ex["problem"], ex["history"], ex["chunk"]))
            for ex in examples]


def to_discriminative_sft_rows(records: Iterable[dict], scheme: Scheme = "rel-effective") -> list[dict]:
    """One SFT conversation per solution: user turn = chunk, assistant turn = "+"/"-" after every chunk.

    ``prm_messages`` stops at the last user turn (the PRM inference layout), so the final verdict is
    appended here: the training chat holds every chunk with its label.
    """
    rows = []
    for rec in records:
        verdicts = ["+" if lab else "-" for lab in rec["labels"][scheme]]
        if len(verdicts) != len(rec["chunks"]):
            raise DataError(f"record of problem {rec.get('problem_id')!r}: labels/chunks length mismatch",
                            field=f"labels.{scheme}")
        msgs = prm_messages(rec["problem"], rec["chunks"], verdicts)
        rows.append({"messages": [*msgs, {"role": "assistant", "content": verdicts[-1]}],
                     "problem_id": rec["problem_id"], "sample_index": rec.get("sample_index", 0)})
    return rows


# --------------------------------------------------------------------- chat template for SFT masks

# SmolLM2 / ChatML per-message expression; the newline inside the literals may be a real newline
# or an escaped ``\n`` depending on how the template was stored.
_CHATML_MESSAGE = re.compile(
    r"\{\{\s*'<\|im_start\|>'\s*\+\s*message\['role'\]\s*\+\s*'(?P<nl>\n|\\n)'\s*\+\s*"
    r"message\['content'\]\s*\+\s*'<\|im_end\|>'\s*\+\s*'(?:\n|\\n)'\s*\}\}")


def chat_template_with_generation_markers(tokenizer) -> str:
    """The tokenizer's chat template with ``{% generation %}`` around each assistant answer.

    TRL's ``assistant_only_loss`` reads the mask that ``{% generation %}`` blocks produce; SmolLM2's
    template has none and TRL ships no patched copy of it. The block covers the content and the
    ``<|im_end|>`` token (so the judge learns to stop after "+"/"-"), not the role header. The
    rendered text is checked to be unchanged. Templates that already have markers are returned as
    is; other known templates fall back to TRL's own training templates; anything else raises.
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template["default"]
    if not template:
        raise ValueError("the tokenizer has no chat template")
    if has_generation_markers(template):
        return template
    m = _CHATML_MESSAGE.search(template)
    if m is None:
        patched = get_training_chat_template(tokenizer)  # raises ValueError for unknown templates
        return template if patched is None else patched
    nl = m.group("nl")
    replacement = (
        "{% if message['role'] == 'assistant' %}"
        f"{{{{ '<|im_start|>assistant{nl}' }}}}"
        "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
        f"{{{{ '{nl}' }}}}"
        f"{{% else %}}{m.group(0)}{{% endif %}}")
    new = template[:m.start()] + replacement + template[m.end():]
    probe = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "+"},
             {"role": "user", "content": "v"}, {"role": "assistant", "content": "-"}]
    before = tokenizer.apply_chat_template(probe, tokenize=False, chat_template=template)
    after = tokenizer.apply_chat_template(probe, tokenize=False, chat_template=new)
    if before != after:
        raise ValueError("adding generation markers changed the rendered chat; patch the template by hand")
    return new


# ----------------------------------------------------------------------------------------- build


def _token_length_fn(tokenizer_name: str):
    from stepjudge.models.registry import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model(tokenizer_name))

    def length(messages: ChatMessages, generation_prompt: bool) -> int:
        enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True,
                                      add_generation_prompt=generation_prompt)
        return len(enc["input_ids"])

    return length


def _filter_length(items: list[dict], key: str, limit: int | None, length, generation_prompt: bool
                   ) -> tuple[list[dict], list[dict]]:
    if limit is None:
        return items, []
    kept, dropped = [], []
    for it in items:
        (kept if length(it[key], generation_prompt) <= limit else dropped).append(it)
    return kept, dropped


def _record_counts(records: Iterable[dict], scheme: str) -> dict[str, int]:
    labs = [lab for r in records for lab in r["labels"][scheme]]
    return {"positive": sum(labs), "negative": len(labs) - sum(labs), "total": len(labs)}


def build_judge_datasets(config: JudgeDatasetConfig) -> dict:
    """{"train": rows, "heldout": rows, "stats": {...}} in the trainer format ``config.format`` names.

    Balancing touches the train split only. The held-out split keeps its natural class mix on purpose:
    it is scored with class-balanced F1, which needs no re-balancing, and its class counts are in the
    stats. Per split the stats give problems, per-class counts before the length filter, the examples
    dropped for length (per class), and the per-class counts before and after balancing. In the
    discriminative format the length limit applies to a solution's whole chat (its training sequence).
    """
    cfg = config
    records = load_annotations(cfg.annotation_paths, cfg.scheme)
    length = _token_length_fn(cfg.tokenizer) if cfg.max_prompt_tokens is not None else None
    stats: dict[str, Any] = {"scheme": cfg.scheme, "format": cfg.format, "seed": cfg.seed,
                             "max_prompt_tokens": cfg.max_prompt_tokens, "tokenizer": cfg.tokenizer,
                             "annotated_solutions": len(records),
                             "problems": len({r["problem_id"] for r in records})}

    stats["answer_rows"] = cfg.answer_rows
    if cfg.format == "discriminative":
        if cfg.answer_rows:
            raise ValueError("answer_rows: the discriminative format labels chunks only (one '+'/'-' per chunk)")
        tr_rec, ho_rec = split_by_problem(records, cfg.heldout_fraction, cfg.heldout_problems, cfg.seed)
        out: dict[str, Any] = {}
        for name, recs in (("train", tr_rec), ("heldout", ho_rec)):
            rows = to_discriminative_sft_rows(recs, cfg.scheme)
            pairs = [{**row, "_rec": rec} for row, rec in zip(rows, recs, strict=True)]
            kept, dropped = _filter_length(pairs, "messages", cfg.max_prompt_tokens, length, False)
            counts = _record_counts([p["_rec"] for p in kept], cfg.scheme)
            out[name] = [{k: v for k, v in p.items() if k != "_rec"} for p in kept]
            stats[name] = {"problems": len({r["problem_id"] for r in recs}), "solutions": len(kept),
                           "before_length_filter": _record_counts(recs, cfg.scheme),
                           "dropped_for_length": {"solutions": len(dropped),
                                                  **_record_counts([p["_rec"] for p in dropped], cfg.scheme)},
                           "before_balance": counts, "after_balance": counts, "balanced": False}
        if cfg.balance:
            log.info("discriminative format: per-solution chats are not class-balanced")
        out["stats"] = stats
        return out

    examples = chunk_examples(records, cfg.scheme, answers=cfg.answer_rows)
    if cfg.format == "no-cot":
        for ex in examples:
            ex["prompt"] = stepwise_verdict_only_messages(ex["problem"], ex["history"], ex["chunk"])
    train, heldout = split_by_problem(examples, cfg.heldout_fraction, cfg.heldout_problems, cfg.seed)
    out = {}
    for name, exs in (("train", train), ("heldout", heldout)):
        kept, dropped = _filter_length(exs, "prompt", cfg.max_prompt_tokens, length, True)
        final = balance_classes(kept, cfg.seed) if (cfg.balance and name == "train") else kept
        out[name] = to_grpo_rows(final)
        stats[name] = {"problems": len({ex["problem_id"] for ex in exs}),
                       "before_length_filter": class_counts(exs),
                       "dropped_for_length": class_counts(dropped),
                       "before_balance": class_counts(kept), "after_balance": class_counts(final),
                       "balanced": bool(cfg.balance and name == "train")}
    out["stats"] = stats
    return out


def write_datasets(result: dict, out_dir: str | os.PathLike) -> Path:
    """train.jsonl, heldout.jsonl and stats.json under ``out_dir``, each replaced atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out / "train.jsonl", result["train"])
    write_jsonl_atomic(out / "heldout.jsonl", result["heldout"])
    atomic_write_json(out / "stats.json", result["stats"])
    return out
