"""The pipeline's one report: ``report.md`` and ``report.html`` (same tables, PNG plots) in the run folder.

Everything shown is read back from the stages' own machine-readable outputs (report.json,
eval_before/after.json, summary.json files), so the report can be rebuilt at any time
(``stepjudge pipeline CONFIG --stages report``) and never holds a number the run folder does not.
Sections for stages that have not run are left out. Images are referenced by relative paths, so the
folder can be copied or served as is.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stepjudge.utils.io import atomic_write_json, atomic_write_text

__all__ = ["collect_results", "render_markdown", "render_html", "write_report", "plot_headline"]


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        return f"{x:.3f}" if abs(x) < 1 and x != 0 else f"{x:.{digits}f}"
    return str(x)


def _dig(result: Mapping | None, dotted: str) -> Any:
    node: Any = result or {}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _fmt_key(x: Any, key: str) -> str:
    """Percentages with one decimal, AUROC and shares with three, probability cuts with six."""
    if not isinstance(x, float):
        return _fmt(x)
    if "threshold" in key:
        return f"{x:.6f}"
    if key in ("auroc", "predicted_positive_fraction"):
        return f"{x:.3f}"
    return f"{x:.1f}"


def _strip(result: Mapping | None) -> dict | None:
    return None if result is None else {k: v for k, v in result.items() if k != "predictions"}


def collect_results(out: str | os.PathLike) -> dict[str, Any]:
    """Every stage's summary found in ``out`` (missing stages are None)."""
    out = Path(out)
    return {
        "annotate": _load(out / "annotate" / "report.json"),
        "judge_data": _load(out / "judge_data" / "stats.json"),
        "judge_before": _strip(_load(out / "judge" / "eval_before.json")),
        "judge_after": _strip(_load(out / "judge" / "eval_after.json")),
        "judge_log": _load(out / "judge" / "train_log.json"),
        "processbench_before": _load(out / "processbench_before" / "summary.json"),
        "processbench_after": _load(out / "processbench_after" / "summary.json"),
        "chunk_reset": _load(out / "chunk_reset" / "summary.json"),
        "best_of_n": _load(out / "best_of_n" / "summary.json"),
        "selection": _load(out / "selection" / "summary.json"),
    }


# ----------------------------------------------------------------------------------- tables
Table = tuple[str, list[str], list[list[str]], list[str]]  # title, header, rows, images (relative paths)


def _tables(results: Mapping[str, Any], state: Mapping | None, out: Path) -> list[Table]:
    tables: list[Table] = []
    if state and state.get("stages"):
        rows = [[s, v.get("last_run", ""), _fmt(v.get("seconds"))] for s, v in state["stages"].items()]
        tables.append(("Stages", ["stage", "this call", "seconds (last run)"], rows, []))

    ann = results["annotate"]
    if ann:
        rows = [["solutions annotated / sampled", f"{ann['solutions_annotated']} / {ann['solutions']}"],
                ["correct solutions", str(ann.get("solutions_correct"))],
                ["chunks labelled", str(ann["chunks"])]]
        for scheme, bal in ann.get("class_balance", {}).items():
            rows.append([f"{scheme}: positive / negative", f"{bal['positive']} / {bal['negative']}"])
        for scheme, agr in (ann.get("truth_agreement") or {}).items():
            if isinstance(agr, Mapping):
                rows.append([f"{scheme}: agreement with true first error (balanced F1)",
                             _fmt(agr.get("balanced_f1"))])
        comp = ann.get("compute", {})
        rows.append(["rollouts (rollouts/s)", f"{comp.get('rollouts')} ({_fmt(comp.get('rollouts_per_s'))})"])
        imgs = ["annotate/q_trajectories.png"] if (out / "annotate" / "q_trajectories.png").exists() else []
        tables.append(("Annotation (Monte-Carlo chunk labels)", ["", "value"], rows, imgs))

    before, after = results["judge_before"], results["judge_after"]
    if before or after:
        keys = [("accuracy", "accuracy (%)"), ("acc_positive", "acc. Positive chunks (%)"),
                ("acc_negative", "acc. Negative chunks (%)"), ("balanced_f1", "balanced F1"),
                ("auroc", "AUROC of P(Positive)"), ("predicted_positive_fraction", "share judged Positive"),
                ("calibrated.threshold", "P(Positive) cut fitted on the train split"),
                ("calibrated.balanced_f1", "balanced F1 at that cut"),
                ("calibrated.accuracy", "accuracy at that cut (%)")]
        rows = [[name, _fmt_key(_dig(before, k), k), _fmt_key(_dig(after, k), k)] for k, name in keys]
        ref = before or after
        title = (f"Judge on held-out chunks ({ref['n']}: {ref['n_positive']} Positive / {ref['n_negative']} "
                 "Negative), before vs after RL")
        imgs = ["judge/curves.png"] if (out / "judge" / "curves.png").exists() else []
        tables.append((title, ["metric", "before", "after"], rows, imgs))

    pb_b, pb_a = results["processbench_before"], results["processbench_after"]
    if pb_b or pb_a:
        subsets = sorted({k for r in (pb_b, pb_a) if r for k in r["metrics"] if k != "average_f1"})
        rows = []
        for s in subsets:
            b = (pb_b or {}).get("metrics", {}).get(s, {})
            a = (pb_a or {}).get("metrics", {}).get(s, {})
            rows.append([s, str(b.get("n") or a.get("n")), _fmt(b.get("acc_error")), _fmt(a.get("acc_error")),
                         _fmt(b.get("acc_correct")), _fmt(a.get("acc_correct")), _fmt(b.get("f1")),
                         _fmt(a.get("f1"))])
        tables.append(("ProcessBench slice (stepwise protocol), before vs after",
                       ["subset", "n", "acc. error before", "after", "acc. correct before", "after", "F1 before",
                        "F1 after"], rows, []))

    cr = results["chunk_reset"]
    if cr:
        tables.append(("Chunk-Reset reasoning vs the same policy without a judge", *_chunk_reset_rows(cr), []))
    bon = results["best_of_n"]
    if bon:
        tables.append(("Best-of-N and voting with the judge", *_best_of_n_rows(bon), []))
    sel = results["selection"]
    if sel:
        names = {"base": "base policy (no SFT)", "judge": "SFT on judge-selected samples",
                 "outcome": "SFT on outcome-selected samples"}
        rows = [[names.get(k, k), str(v.get("sft_rows")), _pct(v.get("accuracy")),
                 _fmt(v.get("mean_accepted_tokens"))] for k, v in sel["policies"].items()]
        sets = sel.get("sets", {})
        rows.append([f"problems with an eligible sample: {sets.get('selected_problems')} of {sets.get('problems')}; "
                     f"same pick by both rules: {sets.get('same_pick')}", "", "", ""])
        tables.append(("Data selection: judge (stepwise rejection sampling) vs outcome-only",
                       ["policy", "SFT rows", "accuracy on new problems (%)", "tokens per solution"], rows, []))
    if (out / "summary.png").exists():
        tables.append(("Headline numbers", [], [], ["summary.png"]))
    return tables


_CR_ROWS = (("accuracy", "accuracy (%)"), ("mean_accepted_tokens", "accepted length (tokens, mean)"),
            ("mean_rejected_tokens", "rejected length (tokens, mean)"), ("judge_calls", "judge calls"),
            ("judge_calls_per_problem", "judge calls per problem"), ("resets", "chunks re-sampled"),
            ("kept_after_max", "chunks kept after max tries"), ("mean_chunks", "chunks per solution"))
_CR_NAMES = {"chunk_reset": "Chunk-Reset", "baseline": "no judge"}


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _chunk_reset_rows(cr: Mapping) -> tuple[list[str], list[list[str]]]:
    """`stepjudge solve`'s summary.json: one column per method (Chunk-Reset, the no-judge baseline)."""
    methods = cr.get("methods", {})
    header = ["metric", *(_CR_NAMES.get(m, m) for m in methods)]
    spec = cr.get("judge_spec") or {}
    rows = []
    if spec.get("score") == "token-prob":
        rows.append(["judge rejects when P(Positive) <", *(_fmt_key(spec.get("threshold"), "threshold")
                                                          if m == "chunk_reset" else ""
                                                          for m in methods)])
    for key, name in _CR_ROWS:
        fmt = _pct if key == "accuracy" else _fmt
        rows.append([name, *(fmt(v.get(key)) for v in methods.values())])
    return header, rows


def _best_of_n_rows(bon: Mapping) -> tuple[list[str], list[list[str]]]:
    """`stepjudge rerank`'s summary.json: accuracy of each way of picking one of the N answers."""
    from stepjudge.infer.best_of_n import METHOD_NAMES

    n = bon.get("problems")
    rows = [[METHOD_NAMES.get(m, m), _pct(acc), f"{bon.get('correct_problems', {}).get(m)} / {n}"]
            for m, acc in bon.get("accuracy", {}).items()]
    rows.append(["judge calls (chunks scored)", str(bon.get("judge_calls")), ""])
    rows.append(["mean judge score: correct / wrong samples",
                 f"{_fmt(bon.get('mean_score_correct'))} / {_fmt(bon.get('mean_score_wrong'))}", ""])
    return ["method", "accuracy (%)", "correct / problems"], rows


# ----------------------------------------------------------------------------------- plot
def headline_numbers(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The few numbers the summary plot shows: {panel: {bar label: value}} (missing ones left out)."""
    panels: dict[str, dict[str, float]] = {}
    b, a = results["judge_before"], results["judge_after"]
    if b and a:
        panels["held-out judge balanced F1"] = {"before": b.get("balanced_f1") or 0.0,
                                               "after": a.get("balanced_f1") or 0.0}
        if b.get("auroc") is not None and a.get("auroc") is not None:
            panels["held-out judge AUROC"] = {"before": b["auroc"], "after": a["auroc"]}
    pb_b, pb_a = results["processbench_before"], results["processbench_after"]
    if pb_b and pb_a:
        panels["ProcessBench avg F1"] = {"before": pb_b["metrics"].get("average_f1") or 0.0,
                                         "after": pb_a["metrics"].get("average_f1") or 0.0}
    cr = results["chunk_reset"]
    if cr and cr.get("methods"):
        panels["Chunk-Reset accuracy (%)"] = {_CR_NAMES.get(k, k): 100 * (v.get("accuracy") or 0.0)
                                              for k, v in cr["methods"].items()}
    bon = results["best_of_n"]
    if bon and isinstance(bon.get("accuracy"), Mapping):
        names = {"first": "pass@1", "majority": "majority", "best_of_n": "judge best", "weighted": "judge-weighted",
                 "oracle": "oracle"}
        panels["best-of-N accuracy (%)"] = {names.get(k, k): 100 * v for k, v in bon["accuracy"].items()
                                            if isinstance(v, (int, float))}
    sel = results["selection"]
    if sel and len(sel.get("policies", {})) > 1:
        names = {"base": "base", "judge": "judge-selected", "outcome": "outcome-only"}
        panels["policy accuracy after SFT (%)"] = {names.get(k, k): 100 * (v.get("accuracy") or 0.0)
                                                   for k, v in sel["policies"].items()}
    return panels


def plot_headline(results: Mapping[str, Any], path: str | os.PathLike) -> Path | None:
    """Bar charts of :func:`headline_numbers` as one PNG (atomic write); None when there is nothing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = headline_numbers(results)
    if not panels:
        return None
    path = Path(path)
    fig = Figure(figsize=(3.6 * len(panels), 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, bars) in zip(axes, panels.items(), strict=True):
        labels, values = list(bars), list(bars.values())
        ax.bar(labels, values, color=["#8899aa", "#3366cc", "#cc6633", "#33aa66", "#aa33aa"][:len(values)])
        for i, v in enumerate(values):
            ax.text(i, v, _fmt(float(v)), ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------- rendering
def render_markdown(tables: Sequence[Table], title: str) -> str:
    lines = [f"# {title}", ""]
    for name, header, rows, images in tables:
        lines += [f"## {name}", ""]
        if header:
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            lines.append("")
        lines += [f"![{name}]({img})" for img in images]
        lines.append("")
    return "\n".join(lines)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:.25em .6em;"
        "text-align:left}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.3em 0}"
        "h2{margin-top:1.6em;border-bottom:1px solid #ddd}")


def render_html(tables: Sequence[Table], title: str) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>"]
    for name, header, rows, images in tables:
        parts.append(f"<section><h2>{esc(name)}</h2>")
        if header:
            parts.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>")
            parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
            parts.append("</tbody></table>")
        parts += [f"<img src='{esc(img)}' alt='{esc(name)}'>" for img in images]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out: str | os.PathLike, state: Mapping | None = None, config: Mapping | None = None) -> dict:
    """Write summary.png, report.md, report.html and results.json into ``out``; returns the results."""
    out = Path(out)
    results = collect_results(out)
    plot_headline(results, out / "summary.png")
    tables = _tables(results, state, out)
    title = f"StepWiser pipeline: {out.name}"
    atomic_write_text(out / "report.md", render_markdown(tables, title))
    atomic_write_text(out / "report.html", render_html(tables, title))
    atomic_write_json(out / "results.json", {**{k: v for k, v in results.items() if k != "judge_log"},
                                              "headline": headline_numbers(results), "config": config})
    return results
