"""The label report of an annotation run: class balance per scheme, Q̂ trajectories, and on ``arith``
how well each scheme's labels find the true first error."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stepjudge.annotate.labels import SCHEMES, first_negative
from stepjudge.utils.io import atomic_write_json, atomic_write_text


def class_balance(records: Sequence[dict]) -> dict:
    out = {}
    for s in SCHEMES:
        labels = [y for r in records if "labels" in r for y in r["labels"][s]]
        pos = sum(labels)
        out[s] = {"chunks": len(labels), "positive": pos, "negative": len(labels) - pos,
                  "positive_fraction": pos / len(labels) if labels else None}
    return out


def truth_agreement(records: Sequence[dict]) -> dict | None:
    """Per scheme, against the exact step truth (arith): first-error exact match rate, and chunk-level
    accuracy / balanced F1 on the chunks whose truth is defined (up to and including the first error)."""
    from stepjudge.eval.metrics import harmonic_f1

    with_truth = [r for r in records if "truth" in r and "labels" in r]
    if not with_truth:
        return None
    out = {}
    for s in SCHEMES:
        first_hits = 0
        tp = tn = pos_n = neg_n = 0
        for r in with_truth:
            fe = r["truth"]["first_error"]
            first_hits += first_negative(r["labels"][s]) == fe
            n = len(r["labels"][s])
            truth = [1] * n if fe < 0 else [1] * fe + [0] + [None] * (n - fe - 1)
            for y, t in zip(r["labels"][s], truth, strict=True):
                if t is None:
                    continue
                if t == 1:
                    pos_n += 1
                    tp += y == 1
                else:
                    neg_n += 1
                    tn += y == 0
        acc_pos = 100 * tp / pos_n if pos_n else None
        acc_neg = 100 * tn / neg_n if neg_n else None
        out[s] = {"solutions": len(with_truth), "first_error_match": 100 * first_hits / len(with_truth),
                  "chunks_positive_truth": pos_n, "chunks_negative_truth": neg_n,
                  "acc_on_correct_chunks": acc_pos, "acc_on_wrong_chunks": acc_neg,
                  "balanced_f1": harmonic_f1(acc_neg, acc_pos),
                  "chunk_accuracy": 100 * (tp + tn) / (pos_n + neg_n) if pos_n + neg_n else None}
    out["solutions_with_an_error"] = sum(r["truth"]["first_error"] >= 0 for r in with_truth)
    return out


def plot_q_trajectories(records: Sequence[dict], path: Path, max_lines: int = 200) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    shown = [r for r in records if "q" in r][:max_lines]
    for r in shown:
        ys = [r["q_init"], *r["q"]]
        ax.plot(range(len(ys)), ys, color="tab:green" if r["correct"] else "tab:red", alpha=0.35, lw=1,
                marker="o", ms=2)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("chunks completed (0 = bare problem)")
    ax.set_ylabel("Q̂ (rollout success rate)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"Q̂ trajectories of {len(shown)} solutions (green: final answer correct, red: wrong)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_report(out: Path, records: Sequence[dict], group_lines: Sequence[dict], cfg) -> dict:
    annotated = [r for r in records if "labels" in r]
    stats = {k: sum(g["stats"][k] for g in group_lines) for k in
             ("seconds", "sample_tokens", "rollout_tokens", "rollouts", "rollout_prompts")}
    problems = [p for g in group_lines for p in g["problems"]]
    summary = {
        "problems": len(problems),
        "problems_filtered": sum(p["status"] != "annotated" for p in problems),
        "solutions": len(records),
        "solutions_annotated": len(annotated),
        "solutions_skipped_format": sum(r.get("status") == "skipped" for r in records),
        "solutions_correct": sum(bool(r["correct"]) for r in records),
        "chunks": sum(len(r["chunks"]) for r in annotated),
        "class_balance": class_balance(annotated),
        "truth_agreement": truth_agreement(annotated),
        "compute": {**stats, "rollouts_per_s": stats["rollouts"] / stats["seconds"] if stats["seconds"] else None,
                    "rollout_tokens_per_s": stats["rollout_tokens"] / stats["seconds"] if stats["seconds"] else None},
    }
    atomic_write_json(out / "report.json", summary)
    if annotated:
        plot_q_trajectories(annotated, out / "q_trajectories.png")

    def pct(x):
        return "n/a" if x is None else f"{x:.1f}"

    lines = [f"# Annotation report: `{cfg.policy}` on `{cfg.problems}`", "",
             f"K={cfg.samples_per_problem} samples/problem, M={cfg.rollouts} rollouts per prefix "
             f"(T={cfg.rollout_temperature}), gamma={cfg.gamma}, alpha={cfg.alpha}, n={cfg.best_of_n}", "",
             f"- problems: {summary['problems']} ({summary['problems_filtered']} filtered)",
             f"- solutions: {summary['solutions']}, correct: {summary['solutions_correct']}, annotated: "
             f"{summary['solutions_annotated']}, skipped (chunk format): {summary['solutions_skipped_format']}",
             f"- chunks labelled: {summary['chunks']}",
             f"- compute: {stats['rollouts']} rollouts, {stats['rollout_tokens']} rollout tokens in "
             f"{stats['seconds']:.0f} s ({pct(summary['compute']['rollouts_per_s'])} rollouts/s)", "",
             "## Class balance", "", "| scheme | chunks | positive | negative | positive % |", "|---|---:|---:|---:|---:|"]
    for s, v in summary["class_balance"].items():
        frac = None if v["positive_fraction"] is None else 100 * v["positive_fraction"]
        lines.append(f"| {s} | {v['chunks']} | {v['positive']} | {v['negative']} | {pct(frac)} |")
    ta = summary["truth_agreement"]
    if ta:
        lines += ["", "## Agreement with the true first error (arith)", "",
                  f"{ta['solutions_with_an_error']} of {ta['abs-q']['solutions']} annotated solutions have a wrong chunk.", "",
                  "| scheme | first-error exact match % | acc. on correct chunks % | acc. on wrong chunks % | balanced F1 |",
                  "|---|---:|---:|---:|---:|"]
        for s in SCHEMES:
            v = ta[s]
            lines.append(f"| {s} | {pct(v['first_error_match'])} | {pct(v['acc_on_correct_chunks'])} | "
                         f"{pct(v['acc_on_wrong_chunks'])} | {pct(v['balanced_f1'])} |")
    if annotated:
        lines += ["", "![Q trajectories](q_trajectories.png)"]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return summary
