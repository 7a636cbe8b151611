"""What a training run shows a person: ``curves.png`` from TRL's log history, and the number
formatting of the markdown reports (before/after tables)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["RL_PANELS", "SFT_PANELS", "Panels", "dotted_get", "fmt_metric", "plot_curves"]

# (title, log_history keys) per panel; keys a run did not log are simply absent.
Panels = tuple[tuple[str, tuple[str, ...]], ...]
RL_PANELS: Panels = (
    ("reward (mean)", ("reward", "eval_reward")),
    ("token entropy", ("entropy",)),
    ("verdict shares", ("verdict/positive_share", "verdict/negative_share", "verdict/unparsed_share")),
    ("frac_reward_zero_std", ("frac_reward_zero_std",)),
    ("clip ratio", ("clip_ratio/low_mean", "clip_ratio/high_mean")),
    ("completion length", ("completions/mean_length",)),
)
SFT_PANELS: Panels = (
    ("loss", ("loss",)),
    ("learning rate", ("learning_rate",)),
    ("gradient norm", ("grad_norm",)),
    ("token accuracy", ("mean_token_accuracy",)),
    ("token entropy", ("entropy",)),
    ("tokens seen", ("num_tokens",)),
)


def plot_curves(log_history: Sequence[dict], path: str | os.PathLike, panels: Panels = RL_PANELS) -> Path:
    """Training curves as a PNG (written atomically) from TRL's ``log_history``, three panels a row.

    Uses matplotlib's object API with the Agg canvas, so no global backend is switched in the caller.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    rows = -(-len(panels) // 3)
    fig = Figure(figsize=(13, 3.5 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 3, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, (title, keys) in zip(axes, panels, strict=False):
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.ticklabel_format(axis="y", useOffset=False)  # entropy moves in the 4th decimal early on
        drawn = False
        for key in keys:
            pts = [(e["step"], e[key]) for e in log_history if e.get(key) is not None and "step" in e]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="." if len(pts) < 50 else None, label=key)
                drawn = True
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)
    return path


def dotted_get(result: dict | None, dotted: str) -> Any:
    """``result["a"]["b"]`` for ``"a.b"``; None where any level is missing."""
    node: Any = result or {}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def fmt_metric(x: Any, key: str = "") -> str:
    """Percentages with one decimal, shares and AUROC with three, probability cuts with six (they sit
    near 1.0 for a judge that favours Positive)."""
    if x is None:
        return "n/a"
    if not isinstance(x, float):
        return str(x)
    if "threshold" in key:
        return f"{x:.6f}"
    if key.startswith(("auroc", "predicted_", "unparsed_")) or key in ("reward", "entropy") or "share" in key \
            or "frac" in key:
        return f"{x:.3f}"
    return f"{x:.1f}"
