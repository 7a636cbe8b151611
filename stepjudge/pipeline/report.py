"""The pipeline's one report: ``report.md`` and ``report.html`` (same tables, PNG plots) in the run folder.

Everything shown is read back from the stages' own machine-readable outputs (report.json,
eval_before/after.json, summary.json files) by each registered stage's ``results`` reader, so the
report can be rebuilt at any time (``stepjudge pipeline CONFIG --stages report``) and never holds a
number the run folder does not. The sections, the summary plot's panels and the entries of
``results.json`` come from the stage registry (:mod:`stepjudge.pipeline.registry`), in stage order;
sections for stages that have not run are left out. Images are referenced by relative paths, so the
folder can be copied or served as is.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stepjudge.pipeline.registry import (
    STAGE_REGISTRY,
    Panels,
    StageContext,
    StageRegistry,
    Table,
    register_stage,
)
from stepjudge.utils.io import atomic_write_json, atomic_write_text

__all__ = ["collect_results", "headline_numbers", "render_markdown", "render_html", "write_report",
           "plot_headline", "load_json", "fmt", "fmt_key", "pct", "dig"]


def load_json(path: Path) -> Any:
    """A stage output, or None when the stage has not written it (yet)."""
    return json.loads(path.read_text()) if path.exists() else None


def fmt(x: Any, digits: int = 1) -> str:
    """A table cell: n/a for missing, three decimals for small fractions, else ``digits`` decimals."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        return f"{x:.3f}" if abs(x) < 1 and x != 0 else f"{x:.{digits}f}"
    return str(x)


def dig(result: Mapping | None, dotted: str) -> Any:
    """``result["a"]["b"]`` for ``"a.b"``; None where a level is missing."""
    node: Any = result or {}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def fmt_key(x: Any, key: str) -> str:
    """Percentages with one decimal, AUROC and shares with three, probability cuts with six."""
    if not isinstance(x, float):
        return fmt(x)
    if "threshold" in key:
        return f"{x:.6f}"
    if key in ("auroc", "predicted_positive_fraction"):
        return f"{x:.3f}"
    return f"{x:.1f}"


def pct(x: Any) -> str:
    """A fraction in [0, 1] as a percentage with one decimal."""
    return "n/a" if x is None else f"{100 * x:.1f}"


def collect_results(out: str | os.PathLike, registry: StageRegistry | None = None) -> dict[str, Any]:
    """Every registered stage's summary entries found in ``out`` (entries of stages not run are None)."""
    out = Path(out)
    results: dict[str, Any] = {}
    for stage in (registry if registry is not None else STAGE_REGISTRY):
        if stage.results is not None:
            results.update(stage.results(out))
    return results


# ----------------------------------------------------------------------------------- tables
def _tables(results: Mapping[str, Any], state: Mapping | None, out: Path, registry: StageRegistry) -> list[Table]:
    tables: list[Table] = []
    if state and state.get("stages"):
        rows = [[s, v.get("last_run", ""), fmt(v.get("seconds"))] for s, v in state["stages"].items()]
        tables.append(("Stages", ["stage", "this call", "seconds (last run)"], rows, []))
    for stage in registry:
        if stage.tables is not None:
            tables += stage.tables(results, out)
    if (out / "summary.png").exists():
        tables.append(("Headline numbers", [], [], ["summary.png"]))
    return tables


# ----------------------------------------------------------------------------------- plot
def headline_numbers(results: Mapping[str, Any], registry: StageRegistry | None = None) -> Panels:
    """The few numbers the summary plot shows: {panel: {bar label: value}} (missing ones left out)."""
    panels: Panels = {}
    for stage in (registry if registry is not None else STAGE_REGISTRY):
        if stage.headline is not None:
            panels.update(stage.headline(results))
    return panels


def plot_headline(results: Mapping[str, Any], path: str | os.PathLike,
                  registry: StageRegistry | None = None) -> Path | None:
    """Bar charts of :func:`headline_numbers` as one PNG (atomic write); None when there is nothing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = headline_numbers(results, registry)
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
            ax.text(i, v, fmt(float(v)), ha="center", va="bottom", fontsize=8)
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


def write_report(out: str | os.PathLike, state: Mapping | None = None, config: Mapping | None = None,
                 registry: StageRegistry | None = None) -> dict:
    """Write summary.png, report.md, report.html and results.json into ``out``; returns the results."""
    out = Path(out)
    registry = registry if registry is not None else STAGE_REGISTRY
    results = collect_results(out, registry)
    plot_headline(results, out / "summary.png", registry)
    tables = _tables(results, state, out, registry)
    title = f"stepjudge pipeline: {out.name}"  # one report for every method's stages
    atomic_write_text(out / "report.md", render_markdown(tables, title))
    atomic_write_text(out / "report.html", render_html(tables, title))
    atomic_write_json(out / "results.json", {**results, "headline": headline_numbers(results, registry),
                                              "config": config})
    return results


@register_stage("report", runs_last=True)
def _run_report(ctx: StageContext) -> None:
    """report.md + report.html + summary.png + results.json, rebuilt on every call (no done-marker)."""
    write_report(ctx.out, ctx.state, ctx.config.model_dump(mode="json"), registry=ctx.registry)
