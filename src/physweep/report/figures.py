"""Round-report figures, rendered with matplotlib's Agg canvas (no pyplot, no display).

Every function returns PNG bytes and always produces a figure (with a short note in place of
missing data), so the set of figure files is fixed -- Snakemake can declare them as outputs.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "BASELINE_STYLES",
    "FIGURE_NAMES",
    "early_stopping_figure",
    "error_vs_lead_figure",
    "gate_matrix_figure",
    "interactions_figure",
    "main_effects_figure",
    "reliability_figure",
    "learning_curves_figure",
    "pareto_front",
    "pareto_figure",
]

#: figure key -> (file name, caption title)
FIGURE_NAMES = {
    "learning_curves": "learning_curves.png",
    "error_vs_lead": "error_vs_lead.png",
    "pareto": "pareto.png",
    "gate_matrix": "gate_matrix.png",
    "reliability": "reliability.png",
    "main_effects": "main_effects.png",
    "interactions": "interactions.png",
    "early_stopping": "early_stopping.png",
}

_DPI = 90


def _new(figsize=(8.0, 4.5), ncols=1) -> tuple[Figure, list]:
    fig = Figure(figsize=figsize, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _log_y(ax) -> None:
    """Log y axis with plain-number tick labels (no 6x10^0 within a decade)."""
    ax.set_yscale("log")
    plain = ticker.FuncFormatter(lambda v, _: f"{v:.3g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _finite(a) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return a[np.isfinite(a)]


def learning_curves_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    probe_steps: Sequence[float] = (),
    baseline_runs: Sequence[str] = (),
    highlight: Sequence[str] = (),
    diverged: Mapping[str, float] | None = None,
    relative: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    stage_steps: Sequence[float] = (),
) -> bytes:
    """Training loss vs step per run; baseline mean ± σ band; probe point(s) as vertical lines.

    ``curves[run] = (step, loss)``. ``diverged[run] = step`` marks a divergence with an x.
    ``relative[run] = (step, loss_rollout / loss_persistence)`` adds a second panel: the rollout
    loss as a fraction of what persistence scores on the same batches (1 = no skill), which does
    not jump when the curriculum raises the horizon. ``stage_steps``: the steps where a new
    horizon stage starts, marked in both panels.
    """
    rel = {r: (np.asarray(s, float), np.asarray(v, float)) for r, (s, v) in (relative or {}).items()}
    rel = {r: sv for r, sv in rel.items() if np.isfinite(sv[1]).any()}
    fig, axes = _new((13.0, 4.8) if rel else (8.5, 4.8), ncols=2 if rel else 1)
    ax = axes[0]
    diverged = dict(diverged or {})
    usable = {r: (np.asarray(s, float), np.asarray(v, float)) for r, (s, v) in curves.items()}
    usable = {r: sv for r, sv in usable.items() if np.isfinite(sv[1]).any()}
    if not usable:
        _note(ax, "no training loss logged")
        return _png(fig)
    all_pos = all((_finite(v) > 0).all() for _, v in usable.values())
    base = [r for r in baseline_runs if r in usable]
    _baseline_band(ax, usable, base, all_pos)
    many = len(usable) > 12
    colors = {}
    for k, (run, (step, loss)) in enumerate(sorted(usable.items())):
        emph = run in highlight
        label = run if (emph or not many) else None
        lw = 2.2 if emph else 1.0
        alpha = 1.0 if emph or not many else 0.55
        color = colors[run] = "0.45" if run in base else f"C{k % 10}"
        ax.plot(step, loss, lw=lw, alpha=alpha, color=color, label=label, zorder=3 if emph else 2)
        if run in diverged and np.isfinite(loss).any():
            idx = np.flatnonzero(np.isfinite(loss))[-1]
            ax.plot(step[idx], loss[idx], "x", color="red", ms=9, mew=2, zorder=4)
    stages = sorted(set(float(p) for p in stage_steps if math.isfinite(p)))
    for panel in axes:
        for i, ps in enumerate(sorted(set(float(p) for p in probe_steps if math.isfinite(p)))):
            panel.axvline(ps, color="k", ls=":", lw=1.2, label="probe point" if i == 0 else None)
        for i, st in enumerate(stages):
            panel.axvline(st, color="#1f5f8b", ls="-", lw=0.8, alpha=0.6,
                          label="new horizon stage" if i == 0 else None)
    if all_pos:
        _log_y(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (all terms)")
    title = "Learning curves"
    if diverged:
        title += " (x = last finite loss of a diverged run)"
    if many:
        title += f" — {len(usable)} runs, winners labelled"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncols=2 if len(ax.get_legend_handles_labels()[0]) > 8 else 1)
    if rel:
        _relative_panel(axes[1], rel, highlight, colors, many)
    return _png(fig)


def _baseline_band(ax, usable: Mapping[str, tuple[np.ndarray, np.ndarray]], base: list[str],
                   all_pos: bool) -> None:
    """Mean ± σ of the baseline runs' loss on their common steps."""
    if not base:
        return
    lo = max(usable[r][0].min() for r in base)
    hi = min(usable[r][0].max() for r in base)
    if hi <= lo:
        return
    grid = np.linspace(lo, hi, 200)
    ys = np.stack([np.interp(grid, *usable[r]) for r in base])
    mean = np.nanmean(ys, axis=0)
    std = np.nanstd(ys, axis=0, ddof=1) if len(base) > 1 else np.zeros_like(mean)
    lower = mean - std
    if all_pos:
        lower = np.maximum(lower, mean * 1e-3)
    ax.fill_between(grid, lower, mean + std, color="0.6", alpha=0.35,
                    label=f"baseline mean ± σ ({len(base)} seeds)", zorder=1)
    ax.plot(grid, mean, color="0.25", lw=1.5, ls="--", zorder=2)


def _relative_panel(ax2, rel, highlight, colors, many: bool) -> None:
    """Rollout loss as a fraction of persistence's on the same batches, per run."""
    for run, (step, ratio) in sorted(rel.items()):
        emph = run in highlight
        smooth = _running_mean(ratio, 9)
        ax2.plot(step, smooth, lw=2.2 if emph else 1.0, color=colors.get(run, "0.3"),
                 alpha=1.0 if emph or not many else 0.55, zorder=3 if emph else 2)
    ax2.axhline(1.0, **BASELINE_STYLES["persistence"][1], label="persistence")
    ax2.set_xlabel("step")
    ax2.set_ylabel("rollout loss ÷ persistence's on the same batches")
    ax2.set_title("Skill during training (running mean of 9 logged steps)", fontsize=10)
    ax2.set_ylim(bottom=0)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)


def _running_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Centred running mean over up to ``n`` finite neighbours (NaN where there are none)."""
    x = np.asarray(x, float)
    ok = np.isfinite(x)
    k = np.ones(n)
    num = np.convolve(np.where(ok, x, 0.0), k, mode="same")
    den = np.convolve(ok.astype(float), k, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


#: how the reference lines of the accuracy figures are drawn: name -> (label, style)
BASELINE_STYLES = {
    "persistence": ("persistence", dict(color="k", ls="--", lw=1.6)),
    "linear": ("linear extrapolation", dict(color="0.45", ls=":", lw=1.8)),
    "reference": ("reference model", dict(color="#8B0000", ls="-.", lw=2.0)),
}


def _baseline_label(name: str, clipped: bool = False, suffix: str = "") -> str:
    label = BASELINE_STYLES.get(name, (name, {}))[0] + suffix
    return label + (" (off the scale)" if clipped else "")


def error_vs_lead_figure(
    series: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    *,
    highlight: Sequence[str] = (),
    metric: str = "nRMSE",
    baselines: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]] | None = None,
) -> bytes:
    """Mean error vs lead time, one panel per key of ``series`` (a split, or "suite, split"):
    ``series[panel][run] = (lead, error)``. ``baselines[panel][name] = (lead, error)`` draws the
    reference lines of that panel (names in :data:`BASELINE_STYLES`: persistence, linear,
    reference); the y range is set by the runs, persistence and the reference model, so linear
    extrapolation, which grows without bound when iterated, is clipped at the top."""
    baselines = baselines or {}
    panels = list(series) or ["test", "ood"]
    ncols = 2 if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(10.0, 4.3 * nrows), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    runs = sorted({r for s in series.values() for r in s})
    many = len(runs) > 12
    colors = {r: f"C{k % 10}" for k, r in enumerate(runs)}
    for ax, panel in zip(axes, panels, strict=False):
        data = series.get(panel, {})
        if not data:
            _note(ax, f"no {panel} trajectories evaluated")
            ax.set_title(panel)
            continue
        scale: list[np.ndarray] = []  # values that set the y range
        for run, (lead, err) in sorted(data.items()):
            err = np.asarray(err, float)
            emph = run in highlight
            ax.plot(lead, err, marker="." if len(err) < 30 else None, color=colors[run],
                    lw=2.2 if emph else 1.0, alpha=1.0 if emph or not many else 0.5,
                    label=run if emph or not many else None, zorder=3 if emph else 2)
            scale.append(_finite(err))
        base = {n: (np.asarray(lead, float), np.asarray(e, float))
                for n, (lead, e) in (baselines.get(panel) or {}).items() if _finite(e).size}
        scale += [_finite(e) for n, (_, e) in base.items() if n != "linear"]
        vals = np.concatenate(scale) if scale else np.array([])
        low = np.concatenate([vals] + [_finite(e) for _, e in base.values()])
        pos = vals.size > 0 and bool((low > 0).all())
        top = float(vals.max()) if vals.size else math.nan
        for name, (lead, err) in base.items():
            clipped = math.isfinite(top) and bool((_finite(err) > top * 1.15).any())
            ax.plot(lead, err, zorder=1,
                    label=_baseline_label(name) + (" (clipped)" if clipped else ""),
                    **BASELINE_STYLES.get(name, ("", dict(color="0.3", ls="-")))[1])
        if pos:
            _log_y(ax)
        if math.isfinite(top) and vals.size:
            lo = float(low.min())
            if pos:
                ax.set_ylim(lo / 1.15, top * 1.15)
            else:
                ax.set_ylim(min(0.0, lo), top * 1.1 if top > 0 else 1.0)
        ax.set_xlabel("lead time (steps)")
        ax.set_ylabel(f"{metric} (mean over samples)")
        ax.set_title(panel if " " in panel else f"{panel} split")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _png(fig)


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points (minimise both), sorted by x; non-finite ignored."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    idx = [i for i in np.argsort(x, kind="stable") if np.isfinite(x[i]) and np.isfinite(y[i])]
    front, best = [], math.inf
    for i in idx:
        if y[i] < best:
            front.append(int(i))
            best = y[i]
    return front


def pareto_figure(
    runs: Sequence[str],
    cost: Sequence[float],
    error: Sequence[float],
    *,
    cost_label: str,
    highlight: Sequence[str] = (),
    note: str = "",
    baselines: Sequence[tuple[str, str, float]] = (),
    error_label: str = "nRMSE (small eval, test)",
) -> bytes:
    """Error vs cost scatter with the Pareto front (lower-left is better).

    ``baselines``: ``(name, label suffix, error)`` horizontal reference lines (names in
    :data:`BASELINE_STYLES`); linear extrapolation is clipped at the top of the runs' range."""
    fig, (ax,) = _new((7.5, 4.8))
    cost = np.asarray(cost, float)
    error = np.asarray(error, float)
    ok = np.isfinite(cost) & np.isfinite(error)
    if not ok.any():
        _note(ax, "no run has both an error and a cost measured")
        return _png(fig)
    lines = [(n, sfx, float(v)) for n, sfx, v in baselines if math.isfinite(float(v))]
    vals = np.concatenate([error[ok], [v for n, _, v in lines if n != "linear"]])
    top, bottom = float(vals.max()), float(vals.min())
    pad = 0.08 * (top - bottom) if top > bottom else 0.05 * abs(top) or 0.05
    k_style: dict[str, int] = {}
    for name, sfx, v in lines:
        style = dict(BASELINE_STYLES.get(name, ("", dict(color="0.3", ls="-")))[1])
        k = k_style[name] = k_style.get(name, -1) + 1
        style["lw"] = style.get("lw", 1.5) * (1.0 if k == 0 else 0.6)
        label = _baseline_label(name, v > top + pad, f"{sfx} = {v:.3g}")
        if v > top + pad:  # off the scale: a legend entry only
            ax.plot([], [], label=label, **style)
        else:
            ax.axhline(v, zorder=0, label=label, **style)
    if lines:
        ax.set_ylim(bottom - pad, top + 1.5 * pad)
    ax.scatter(cost[ok], error[ok], color="C0", s=28, zorder=2, label="run")
    front = pareto_front(cost, error)
    ax.step(cost[front], error[front], where="post", color="C3", lw=1.5, zorder=1,
            label="Pareto front")
    for i in np.flatnonzero(ok):
        emph = runs[i] in highlight
        if emph or i in front or ok.sum() <= 6:
            ax.annotate(("★ " if emph else "") + runs[i], (cost[i], error[i]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points",
                        weight="bold" if emph else "normal")
    ax.set_xlabel(cost_label)
    ax.set_ylabel(error_label)
    title = "Accuracy vs cost"
    if note:
        title += f"\n{note}"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if lines:
        fig.set_size_inches(10.0, 4.8)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8)
    return _png(fig)


def gate_matrix_figure(
    runs: Sequence[str],
    gates: Sequence[str],
    passed: np.ndarray,
    values: np.ndarray | None = None,
) -> bytes:
    """Runs × gates matrix: green pass, red fail, grey not measured (values printed in cells).

    ``passed``: float array (runs, gates) with 1 = pass, 0 = fail, NaN = not measured.
    """
    height = max(2.5, 0.28 * len(runs) + 1.5)
    width = max(5.0, 1.2 * len(gates) + 3.0)
    fig, (ax,) = _new((min(width, 14.0), min(height, 20.0)))
    if not runs or not gates:
        _note(ax, "no physics gates in this round" if runs else "no runs")
        return _png(fig)
    passed = np.asarray(passed, float)
    rgb = np.empty(passed.shape + (3,))
    rgb[:] = (0.80, 0.80, 0.80)
    rgb[passed == 1] = (0.55, 0.80, 0.55)
    rgb[passed == 0] = (0.90, 0.45, 0.42)
    ax.imshow(rgb, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(gates)), gates, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(runs)), runs, fontsize=7)
    if len(runs) * len(gates) <= 400:
        for i in range(len(runs)):
            for j in range(len(gates)):
                v = values[i, j] if values is not None else math.nan
                p = passed[i, j]
                txt = "n/m" if not np.isfinite(p) else ("pass" if p == 1 else "FAIL")
                if values is not None and np.isfinite(v):
                    txt = f"{v:.3g}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=8)
    ax.set_title("Physics gates (green pass, red fail, grey not measured)", fontsize=10)
    return _png(fig)


def reliability_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]],
    *,
    title: str = "Reliability diagram",
    note: str = "",
) -> bytes:
    """Observed frequency vs nominal quantile level per run, with the diagonal.

    ``curves[run] = (nominal_levels, observed_frequency, ece)`` (observed averaged over the
    evaluated trajectories). Points under the diagonal at high levels = overconfident.
    """
    fig, (ax,) = _new((6.4, 5.4))
    ax.plot([0, 1], [0, 1], color="0.3", ls="--", lw=1.2, label="perfect calibration")
    usable = {r: c for r, c in curves.items() if _finite(c[1]).size}
    if not usable:
        _note(ax, note or "no calibration data (no ensemble evaluation)")
        ax.set_title(title, fontsize=10)
        return _png(fig)
    for k, (run, (lev, obs, ece)) in enumerate(usable.items()):
        lev, obs = np.asarray(lev, float), np.asarray(obs, float)
        label = run + (f" (ECE {ece:.3g})" if math.isfinite(ece) else "")
        ax.plot(lev, obs, marker="o", ms=3.5, lw=1.6, color=f"C{k % 10}", label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal quantile level")
    ax.set_ylabel("observed frequency (truth below the quantile)")
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def _level_labels(levels: Sequence) -> list[str]:
    out = []
    for v in levels:
        if isinstance(v, float | np.floating):
            out.append(f"{float(v):.4g}")
        else:
            out.append(str(v))
    return out


def main_effects_figure(
    effects: Mapping[str, Mapping[str, Sequence]],
    *,
    response_label: str,
    note: str = "",
) -> bytes:
    """One panel per knob: least-squares mean of the response per level (filled, line) and the
    raw level mean (hollow, with n). ``effects[knob] = {"levels", "ls_mean", "mean", "n",
    "p"}``; ``p`` may be NaN (no test possible)."""
    knobs = list(effects)
    ncols = max(1, min(len(knobs), 4))
    nrows = max(1, math.ceil(len(knobs) / ncols))
    fig = Figure(figsize=(3.3 * ncols + 0.6, 3.0 * nrows + 0.6), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel())
    if not knobs:
        _note(axes[0], note or "no knob was varied in this round")
        return _png(fig)
    for ax, knob in zip(axes, knobs, strict=False):
        e = effects[knob]
        xs = np.arange(len(e["levels"]))
        ls = np.asarray(e["ls_mean"], float)
        raw = np.asarray(e["mean"], float)
        if np.isfinite(ls).any():
            ax.plot(xs, ls, marker="o", color="C0", lw=1.8, label="adjusted mean (model)")
        ax.plot(xs, raw, marker="o", ls="none", mfc="none", color="C1", label="raw mean")
        for x, yv, n in zip(xs, raw, e["n"], strict=True):
            if math.isfinite(yv):
                ax.annotate(f"n={int(n)}", (x, yv), xytext=(0, -11), textcoords="offset points",
                            ha="center", fontsize=7, color="0.35")
        ax.set_xticks(xs, _level_labels(e["levels"]), fontsize=8)
        ax.set_xlim(-0.5, len(xs) - 0.5)
        p = float(e.get("p", math.nan))
        ptxt = f"p = {p:.2g}" if math.isfinite(p) else "p not testable"
        ax.set_title(f"{knob}  ({ptxt})", fontsize=9)
        ax.set_xlabel(knob, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(knobs):]:
        ax.set_visible(False)
    for r in range(nrows):
        axes[r * ncols].set_ylabel(response_label, fontsize=8)
    axes[0].legend(fontsize=7)
    if note:
        fig.suptitle(note, fontsize=9)
    return _png(fig)


def interactions_figure(
    panels: Sequence[Mapping],
    *,
    response_label: str,
    note: str = "",
) -> bytes:
    """Interaction plots: per pair, the mean response per level of ``a`` (x axis), one line per
    level of ``b``. Parallel lines = no interaction. ``panels[i] = {"a", "b", "title", "cells"}``
    with ``cells`` a DataFrame of ``a_level, b_level, n, mean``."""
    ncols = max(1, min(len(panels), 3))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = Figure(figsize=(4.2 * ncols + 0.4, 3.4 * nrows + 0.6), dpi=_DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    if not panels:
        fig.set_size_inches(8.0, 2.4)
        _note(axes[0], note or "no interaction can be estimated from this round's design")
        return _png(fig)
    for ax, panel in zip(axes, panels, strict=False):
        cells = panel["cells"]
        a_levels = sorted(cells["a_level"].unique())
        xs = {v: i for i, v in enumerate(a_levels)}
        for k, bl in enumerate(sorted(cells["b_level"].unique())):
            sub = cells[cells["b_level"] == bl].sort_values("a_level")
            ax.plot([xs[v] for v in sub["a_level"]], sub["mean"], marker="o", color=f"C{k}",
                    label=f"{panel['b']} = {_level_labels([bl])[0]}")
        ax.set_xticks(range(len(a_levels)), _level_labels(a_levels), fontsize=8)
        ax.set_xlabel(panel["a"], fontsize=8)
        ax.set_ylabel(response_label, fontsize=8)
        ax.set_title(panel.get("title", f"{panel['a']} x {panel['b']}"), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if note:
        fig.suptitle(note, fontsize=9)
    return _png(fig)


#: decision -> (marker colour, label) of the early-stopping strip plot
DECISION_STYLES = {"baseline": ("0.35", "baseline"), "continue": ("C0", "continued"),
                   "stop": ("C3", "stopped"), "diverged": ("C1", "diverged")}


def early_stopping_figure(
    scores: Mapping[str, float],
    decisions: Mapping[str, str | None],
    *,
    mean: float,
    sigma: float,
    sigma_factor: float,
    score_label: str = "objective at the probe point",
    rule: bool = False,
) -> bytes:
    """Strip plot of every run's probe score by decision, with the baseline band (mean ± σ,
    shaded) and the stop threshold (mean − sigma_factor·σ); runs above the line stop.
    ``rule``: the decisions are what the rule would have decided (early stopping was off)."""
    fig, (ax,) = _new((7.5, 4.2))
    pts = {r: float(s) for r, s in scores.items() if math.isfinite(float(s))}
    if not pts:
        _note(ax, "no probe scores recorded")
        return _png(fig)
    groups = [g for g in DECISION_STYLES if any(decisions.get(r) == g for r in pts)]
    rng = np.random.default_rng(0)
    for x, g in enumerate(groups):
        ys = [pts[r] for r in pts if decisions.get(r) == g]
        color, label = DECISION_STYLES[g]
        ax.scatter(x + rng.uniform(-0.15, 0.15, len(ys)), ys, s=30, color=color, zorder=3,
                   marker="x" if g == "stop" else "o",
                   label=("would stop" if rule and g == "stop" else label) + f" ({len(ys)})")
    if math.isfinite(mean) and math.isfinite(sigma):
        ax.axhspan(mean - sigma, mean + sigma, color="0.85", zorder=0,
                   label=f"baseline mean ± σ ({mean:.3g} ± {sigma:.3g})")
        ax.axhline(mean, color="0.4", lw=1, zorder=1)
        thr = mean - sigma_factor * sigma
        ax.axhline(thr, color="C3", ls="--", lw=1.4, zorder=2,
                   label=f"stop threshold mean − {sigma_factor:g}σ = {thr:.3g}")
    ax.set_xticks(range(len(groups)), [("would stop" if rule and g == "stop" else
                                        DECISION_STYLES[g][1]) for g in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel(score_label + " (lower is better)")
    ax.set_title("Probe scores against the baseline band"
                 + ("\n(early stopping off: what the rule would have done)" if rule else ""),
                 fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)
