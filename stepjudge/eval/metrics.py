"""ProcessBench's metric, exactly as the benchmark defines it (pure functions).

Per subset: ``acc_error`` = share of erroneous cases (label != -1) whose prediction equals the label
exactly; ``acc_correct`` = share of correct cases (label == -1) predicted -1; ``f1`` = harmonic mean of
the two (not a precision/recall F1). ``average_f1`` = arithmetic mean of the subset F1s. Values are in
percent. An unparseable prediction (None) never matches. A subset with no case of one class has that
accuracy and its F1 undefined (None) and is left out of the average.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def harmonic_f1(acc_error: float | None, acc_correct: float | None) -> float | None:
    if acc_error is None or acc_correct is None:
        return None
    if acc_error + acc_correct == 0:
        return 0.0
    return 2 * acc_error * acc_correct / (acc_error + acc_correct)


def subset_scores(pairs: Iterable[tuple[int, int | None]]) -> dict:
    """``pairs`` of (label, prediction) for one subset -> n, acc_error, acc_correct, f1 (percent)."""
    err_hits = err_n = cor_hits = cor_n = 0
    for label, pred in pairs:
        hit = pred is not None and pred == label
        if label == -1:
            cor_n += 1
            cor_hits += hit
        else:
            err_n += 1
            err_hits += hit
    acc_error = 100.0 * err_hits / err_n if err_n else None
    acc_correct = 100.0 * cor_hits / cor_n if cor_n else None
    return {"n": err_n + cor_n, "n_error": err_n, "n_correct": cor_n, "acc_error": acc_error,
            "acc_correct": acc_correct, "f1": harmonic_f1(acc_error, acc_correct)}


def auroc(positive: Iterable[bool], scores: Iterable[float]) -> float | None:
    """Area under the ROC curve of ``scores`` for telling ``positive`` items from the rest (0..1).

    The probability that a random positive scores above a random negative, ties counting half
    (Mann-Whitney U from average ranks). None when either class is empty.
    """
    pairs = sorted(zip(scores, positive, strict=True), key=lambda t: t[0])
    n_pos = sum(1 for _, y in pairs if y)
    n_neg = len(pairs) - n_pos
    if not n_pos or not n_neg:
        return None
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + 1 + j) / 2  # ranks i+1..j share their mean
        rank_sum += avg_rank * sum(1 for _, y in pairs[i:j] if y)
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def processbench_summary(records: Iterable[Mapping]) -> dict:
    """``records`` with ``subset``, ``label`` and ``prediction`` -> per-subset scores + ``average_f1``.

    Subsets appear in the benchmark's order (gsm8k, math, olympiadbench, omnimath), then any other.
    """
    from stepjudge.data.loaders import PROCESSBENCH_SUBSETS

    by_subset: dict[str, list[tuple[int, int | None]]] = {}
    for r in records:
        by_subset.setdefault(r["subset"], []).append((int(r["label"]), r.get("prediction")))
    order = [s for s in PROCESSBENCH_SUBSETS if s in by_subset] + sorted(
        s for s in by_subset if s not in PROCESSBENCH_SUBSETS)
    summary: dict = {s: subset_scores(by_subset[s]) for s in order}
    f1s = [v["f1"] for v in summary.values() if v["f1"] is not None]
    summary["average_f1"] = sum(f1s) / len(f1s) if f1s else None
    return summary


def summary_markdown(summary: Mapping, title: str = "ProcessBench") -> str:
    def fmt(x):
        return "n/a" if x is None else f"{x:.1f}"

    lines = [f"### {title}", "", "| subset | n | error cases | correct cases | acc. error % | acc. correct % | F1 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in summary.items():
        if name == "average_f1" or not isinstance(v, Mapping):
            continue
        lines.append(f"| {name} | {v['n']} | {v['n_error']} | {v['n_correct']} | {fmt(v['acc_error'])} | "
                     f"{fmt(v['acc_correct'])} | {fmt(v['f1'])} |")
    lines.append(f"| **average** | | | | | | **{fmt(summary.get('average_f1'))}** |")
    return "\n".join(lines) + "\n"
