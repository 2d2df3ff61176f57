"""Main effects and two-way interactions of the swept knobs, from a round's runs.

Pure API: a DataFrame with one row per run (knob columns + a numeric response) goes in, tables
and notes come out -- no files, no figures (see :mod:`physweep.report.figures` for those).

Every knob is a categorical factor (the playbook sweeps 2-4 discrete levels). The fit is ordinary
least squares (``statsmodels`` ``ols``); significance comes from ``anova_lm`` comparisons of
nested models, which stay correct for the unbalanced, partial designs rounds use (a 3x3 grid
plus baseline replicates, fractional factorials, one-knob-at-a-time blocks):

* main effect of knob k: the additive model with all estimable knobs vs the same model without k
  (Type II for an additive model);
* interaction a x b: the additive model vs the additive model + ``C(a):C(b)``.

Main effects are reported as least-squares means (the additive model's prediction averaged over
a balanced grid of the other knobs' levels), so a level that happens to be paired with good
values of other knobs is not credited with their effect.

Whatever the design cannot separate is *not* fitted but listed in ``notes`` with the reason:
a knob not varied, two knobs that always change together (aliased main effects), an interaction
whose contrasts are linear combinations of main effects (aliased -- e.g. a one-knob-at-a-time
block or a Latin-square fraction, where a x b is aliased with a third knob), too few runs, or no
residual degrees of freedom left to test against.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["EffectsResult", "design_notes", "estimate_effects", "playbook_pairs"]

MAX_GRID = 50_000  # LS-mean grid cap (product of level counts)


def playbook_pairs() -> dict[tuple[str, str], str]:
    """The playbook's interaction notes (``physweep.plan.knobs.INTERACTIONS``)."""
    from physweep.plan.knobs import INTERACTIONS

    return dict(INTERACTIONS)


@dataclass
class EffectsResult:
    """What :func:`estimate_effects` found.

    ``main``: one row per (knob, level): ``knob, level, n, mean`` (raw mean of the response over
    the runs at that level), ``ls_mean`` (least-squares mean), ``effect`` (``ls_mean`` minus the
    mean of the knob's ``ls_mean``s; ``NaN`` for aliased knobs), ``adjusted`` (the response's
    overall mean + ``effect``: the LS mean on the scale of the raw means, for plots).
    ``anova``: one row per tested term: ``term, kind ('main'|'interaction'), knobs, df, sum_sq,
    F, p_value`` (``NaN`` F/p when there is no residual degree of freedom).
    ``interactions``: ``(a, b) -> cell table`` with ``a_level, b_level, n, mean`` for every
    estimable pair. ``notes``: human-readable "not estimable because ..." lines.
    """

    response: str
    n_runs: int
    factors: list[str]
    fixed: dict[str, object]
    main: pd.DataFrame
    anova: pd.DataFrame
    interactions: dict[tuple[str, str], pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    residual_df: int = 0
    labels: dict[tuple[str, str], str] = field(default_factory=dict)

    def p_value(self, term: str) -> float:
        """p-value of a main effect ``"lr"`` or an interaction ``"lr:ema"`` (NaN if absent)."""
        row = self.anova[self.anova["term"] == term]
        return float(row["p_value"].iloc[0]) if len(row) else math.nan

    def effect(self, knob: str, level) -> float:
        rows = self.main[(self.main["knob"] == knob) & (self.main["level"] == level)]
        return float(rows["effect"].iloc[0]) if len(rows) else math.nan


def _rank(x: np.ndarray) -> int:
    return int(np.linalg.matrix_rank(x)) if x.size else 0


def _dummies(codes: np.ndarray, n_levels: int) -> np.ndarray:
    """Treatment-coded columns (first level dropped) of one factor."""
    out = np.zeros((codes.size, max(n_levels - 1, 0)))
    for j in range(1, n_levels):
        out[:, j - 1] = codes == j
    return out


def _inter_cols(ca: np.ndarray, la: int, cb: np.ndarray, lb: int) -> np.ndarray:
    da, db = _dummies(ca, la), _dummies(cb, lb)
    if not da.size or not db.size:
        return np.zeros((ca.size, 0))
    return np.column_stack([da[:, i] * db[:, j] for i in range(da.shape[1])
                            for j in range(db.shape[1])])


def _level_text(v) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.4g}"
    return str(v)


def _sort_levels(values: Iterable) -> list:
    vals = list(dict.fromkeys(values))
    try:
        return sorted(vals)
    except TypeError:
        return sorted(vals, key=str)


@dataclass
class _Design:
    """The runs used in an effects fit: response, knob levels and codes, the main-effects
    design matrix ``x`` of the estimable ``factors``."""

    y: np.ndarray
    knobs: list[str]
    fixed: dict[str, object]
    levels: dict[str, list]
    codes: dict[str, np.ndarray]
    factors: list[str] = field(default_factory=list)
    x: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.y.size)

    @property
    def p_main(self) -> int:
        return _rank(self.x)

    def dummies(self, k: str) -> np.ndarray:
        return _dummies(self.codes[k], len(self.levels[k]))


def _read_design(runs: pd.DataFrame, knobs: Sequence[str], response: str,
                 notes: list[str]) -> _Design:
    """Runs with a finite response; the knobs that vary among them, coded 0..levels-1."""
    knobs = [k for k in knobs if k in runs.columns]
    y_all = pd.to_numeric(runs[response], errors="coerce") if response in runs.columns \
        else pd.Series(np.nan, index=runs.index)
    keep = np.isfinite(y_all.to_numpy(dtype=float))
    dropped = int((~keep).sum())
    if dropped:
        notes.append(f"{dropped} run(s) left out: no finite {response} (diverged or not "
                     "evaluated).")
    data = runs.loc[keep, knobs].copy()
    d = _Design(y=y_all[keep].to_numpy(dtype=float), knobs=knobs, fixed={}, levels={},
                codes={})
    for k in knobs:
        col = data[k]
        if col.isna().any():
            col = col.astype(object).where(col.notna(), "missing")
        lv = _sort_levels(col.tolist())
        if len(lv) < 2:
            d.fixed[k] = lv[0] if lv else None
            continue
        d.levels[k] = lv
        index = {v: i for i, v in enumerate(lv)}
        d.codes[k] = np.array([index[v] for v in col.tolist()])
    return d


def _main_design(d: _Design, notes: list[str]) -> None:
    """Estimable main effects (greedy: a knob whose columns add no rank is aliased)."""
    n, ones = d.n, np.ones((d.n, 1))
    x = ones
    for k in d.levels:
        dk = d.dummies(k)
        gain = _rank(np.column_stack([x, dk])) - _rank(x)
        if gain == 0:
            partner = [f for f in d.factors
                       if _rank(np.column_stack([ones, d.dummies(f), dk]))
                       == _rank(np.column_stack([ones, d.dummies(f)]))]
            why = (f"it always changes together with {', '.join(partner)} (aliased)" if partner
                   else "its levels are confounded with the other knobs' levels (aliased)")
            notes.append(f"Main effect of {k} not estimable: {why}.")
            continue
        if gain < dk.shape[1]:
            notes.append(f"Main effect of {k} only partly separable from the other knobs "
                         f"({gain} of {dk.shape[1]} degrees of freedom).")
        x = np.column_stack([x, dk])
        d.factors.append(k)
    d.x = x
    if n and n - d.p_main <= 0 and d.factors:
        notes.append(f"Main effects: no residual degrees of freedom ({n} runs, {d.p_main} "
                     "parameters) -- level means shown, no significance test possible.")


def _formula(terms: list[str]) -> str:
    return "y ~ " + (" + ".join(terms) if terms else "1")


class _Fit:
    """The OLS fits (statsmodels) of one effects estimate, on categorical knob columns."""

    def __init__(self, d: _Design):
        import statsmodels.formula.api as smf
        from statsmodels.stats.anova import anova_lm

        self.smf, self.anova_lm, self.d = smf, anova_lm, d
        self.names = {k: f"k{i}" for i, k in enumerate(d.factors)}
        frame = pd.DataFrame({self.names[k]: [d.levels[k][c] for c in d.codes[k]]
                              for k in d.factors})
        frame["y"] = d.y
        for k in d.factors:
            frame[self.names[k]] = pd.Categorical(frame[self.names[k]], categories=d.levels[k])
        self.frame = frame
        self.main_terms = [f"C({self.names[k]})" for k in d.factors]
        self.anova_rows: list[dict] = []
        self.main = None

    def ols(self, terms: list[str]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.smf.ols(_formula(terms), self.frame).fit()

    def fit_main(self) -> None:
        if self.d.n < 2 or not self.d.factors:
            return
        self.main = self.ols(self.main_terms)
        for k in self.d.factors:
            reduced = self.ols([t for t in self.main_terms if t != f"C({self.names[k]})"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.anova_rows.append(_compare(self.anova_lm, reduced, self.main, k, "main",
                                                (k,)))

    def fit_pair(self, a: str, b: str) -> None:
        full = self.ols(self.main_terms + [f"C({self.names[a]}):C({self.names[b]})"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.anova_rows.append(_compare(self.anova_lm, self.main, full, f"{a}:{b}",
                                            "interaction", (a, b)))

    def ls_means(self) -> pd.DataFrame | None:
        """Predictions of the main-effects model on the full level grid (capped)."""
        d = self.d
        if self.main is None or math.prod(len(d.levels[k]) for k in d.factors) > MAX_GRID:
            return None
        cols = [self.names[k] for k in d.factors]
        grid = pd.DataFrame(list(itertools.product(*[d.levels[k] for k in d.factors])),
                            columns=cols)
        for k in d.factors:
            grid[self.names[k]] = pd.Categorical(grid[self.names[k]], categories=d.levels[k])
        grid["pred"] = np.asarray(self.main.predict(grid), dtype=float)
        return grid


def _main_table(d: _Design, fit: _Fit) -> pd.DataFrame:
    """Main-effects table: raw means and LS means per level of every varied knob."""
    rows = []
    grid = fit.ls_means()
    for k in d.levels:
        ls = {}
        if k in d.factors and grid is not None:
            ls = grid.groupby(fit.names[k], observed=False)["pred"].mean().to_dict()
        mean_ls = float(np.mean(list(ls.values()))) if ls else math.nan
        for i, lv in enumerate(d.levels[k]):
            sel = d.codes[k] == i
            raw = float(d.y[sel].mean()) if sel.any() else math.nan
            lsm = float(ls.get(lv, math.nan))
            rows.append({"knob": k, "level": lv, "n": int(sel.sum()), "mean": raw,
                         "ls_mean": lsm, "effect": lsm - mean_ls,
                         "adjusted": float(d.y.mean()) + lsm - mean_ls})
    return pd.DataFrame(rows, columns=["knob", "level", "n", "mean", "ls_mean", "effect",
                                       "adjusted"])


def _pair_problem(d: _Design, a: str, b: str) -> tuple[str | None, int]:
    """Why the a x b interaction cannot be estimated (None if it can), and the degrees of
    freedom it adds to the main-effects model."""
    why = _not_estimable(a, b, d.levels, d.factors, d.codes, d.x, d.n, d.fixed, d.knobs)
    if why is not None:
        return why, 0
    n = d.n
    cols = _inter_cols(d.codes[a], len(d.levels[a]), d.codes[b], len(d.levels[b]))
    xf = np.column_stack([d.x, cols])
    gain = _rank(xf) - d.p_main
    resid = n - _rank(xf)
    ab = np.column_stack([np.ones((n, 1)), d.dummies(a), d.dummies(b)])
    own = _rank(np.column_stack([ab, cols])) - _rank(ab)  # df the a x b cells carry
    alias = [c for c in d.factors if c not in (a, b) and _rank(np.column_stack(
        [ab, d.dummies(c), cols])) < _rank(ab) + own + len(d.levels[c]) - 1]
    alias_txt = "the main effect of " + ", ".join(alias)
    if gain == 0:
        why = (f"aliased with {alias_txt}" if alias and own else
               "aliased with the main effects: no combination of runs separates it "
               f"(the design does not cross {a} and {b})")
    elif resid <= 0:
        why = (f"no residual degrees of freedom left after fitting it ({n} runs, "
               f"{_rank(xf)} parameters)")
        if gain < own:
            why += f"; {own - gain} of its {own} degrees of freedom are aliased with " \
                + alias_txt
    return why, gain


def _pair_cells(d: _Design, a: str, b: str) -> pd.DataFrame:
    return (pd.DataFrame({"a_level": [d.levels[a][c] for c in d.codes[a]],
                          "b_level": [d.levels[b][c] for c in d.codes[b]], "y": d.y})
            .groupby(["a_level", "b_level"])["y"].agg(["size", "mean"]).reset_index()
            .rename(columns={"size": "n"}))


def _interactions(d: _Design, fit: _Fit, labels: Mapping[tuple[str, str], str],
                  crossed_pairs: bool, notes: list[str]) -> dict[tuple[str, str], pd.DataFrame]:
    """The requested pairs (and, with ``crossed_pairs``, any other separable pair)."""
    inter: dict[tuple[str, str], pd.DataFrame] = {}
    unswept: list[str] = []
    extra = [p for p in itertools.combinations(d.factors, 2)
             if crossed_pairs and p not in labels and (p[1], p[0]) not in labels]
    for a, b in list(labels) + extra:
        asked = (a, b) in labels
        why, gain = _pair_problem(d, a, b)
        if why == "neither knob swept in this round" and asked:
            unswept.append(f"{a} x {b}")
            continue
        if why is not None:
            if asked:
                label = labels.get((a, b), f"{a} x {b}")
                notes.append(f"Interaction {a} x {b} ({short_label(label)}): not estimable "
                             f"-- {why}.")
            continue
        fit.fit_pair(a, b)
        inter[(a, b)] = _pair_cells(d, a, b)
        cells_df = (len(d.levels[a]) - 1) * (len(d.levels[b]) - 1)
        if asked and gain < cells_df:
            notes.append(f"Interaction {a} x {b}: only partly estimable ({gain} of "
                         f"{cells_df} degrees of freedom; not every level combination was run).")
    if unswept:
        notes.append("Interactions from the playbook not looked at (knobs not swept in this "
                     "round): " + ", ".join(unswept) + ".")
    return inter


def estimate_effects(
    runs: pd.DataFrame,
    knobs: Sequence[str],
    response: str,
    *,
    pairs: Mapping[tuple[str, str], str] | Iterable[tuple[str, str]] | None = None,
    crossed_pairs: bool = True,
) -> EffectsResult:
    """Main effects of ``knobs`` and two-way interactions on ``response`` (lower or higher --
    the sign is the caller's business).

    ``runs``: one row per run with the knob columns and the numeric ``response`` column; rows
    whose response is not finite (diverged runs, missing evals) are left out and counted in the
    notes. ``pairs``: the interactions to look at, with a label each (default: the playbook's,
    :func:`playbook_pairs`); a pair that cannot be estimated gets a note. With
    ``crossed_pairs`` any other pair of varied knobs is fitted too when the design separates it
    (no note when it does not -- nobody asked for it).
    """
    if pairs is None:
        pairs = playbook_pairs()
    labels: dict[tuple[str, str], str] = (
        {tuple(k): str(v) for k, v in pairs.items()} if isinstance(pairs, Mapping)
        else {tuple(p): f"{p[0]} x {p[1]}" for p in pairs})
    notes: list[str] = []
    d = _read_design(runs, knobs, response, notes)
    _main_design(d, notes)
    fit = _Fit(d)
    fit.fit_main()
    main = _main_table(d, fit)
    inter = _interactions(d, fit, labels, crossed_pairs, notes)
    anova = pd.DataFrame(fit.anova_rows, columns=["term", "kind", "knobs", "df", "sum_sq", "F",
                                                  "p_value"])
    return EffectsResult(response=response, n_runs=d.n, factors=d.factors, fixed=d.fixed,
                         main=main, anova=anova, interactions=inter, notes=_dedupe(notes),
                         residual_df=int(max(d.n - d.p_main, 0)), labels=labels)


def design_notes(designs: Iterable[Mapping]) -> list[str]:
    """What each fractional block of the plan (plan.json ``designs``) confounds, from the
    planner's alias structure: resolution and main effects aliased with two-factor interactions
    -- the reason an effect below may be a sum of effects."""
    out = []
    for d in designs if isinstance(designs, list) else []:
        if not isinstance(d, Mapping) or d.get("type") != "fractional" \
                or d.get("resolution") in (None, "full"):
            continue
        text = (f"Block {d.get('block')}: fraction of {d.get('runs')} of {d.get('full')} runs, "
                f"resolution {d.get('resolution')}")
        aliases = list(d.get("aliases") or [])
        text += (": " + "; ".join(aliases[:8]) + (" ..." if len(aliases) > 8 else "")
                 if aliases else ": main effects clear of two-factor interactions")
        out.append(text + ".")
    return out


def short_label(label: str) -> str:
    """'LR x EMA: higher EMA ...' -> 'LR x EMA'."""
    return label.split(":")[0].strip()


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _in_span(cols: np.ndarray, basis: np.ndarray) -> bool:
    return _rank(np.column_stack([basis, cols])) == _rank(basis)


def _not_estimable(a, b, levels, factors, codes, x, n, fixed, knobs) -> str | None:
    missing = [k for k in (a, b) if k not in knobs]
    if missing:
        return "neither knob swept in this round" if len(missing) == 2 \
            else f"{missing[0]} not swept in this round"
    not_varied = [k for k in (a, b) if k not in levels]
    if not_varied:
        return "not both varied (" + ", ".join(
            f"{k} fixed at {_level_text(fixed.get(k))}" for k in not_varied) + ")"
    combos = len(set(zip(codes[a].tolist(), codes[b].tolist(), strict=True)))
    if combos < 4:
        return (f"too few runs: only {combos} of the {len(levels[a]) * len(levels[b])} level "
                "combinations were run (at least a 2x2 crossing is needed)")
    aliased = [k for k in (a, b) if k not in factors]
    if aliased:
        return f"the main effect of {' and '.join(aliased)} is itself aliased"
    return None


def _compare(anova_lm, reduced, full, term, kind, knobs) -> dict:
    table = anova_lm(reduced, full)
    df = float(table["df_diff"].iloc[1])
    ss = float(table["ss_diff"].iloc[1])
    f = float(table["F"].iloc[1]) if full.df_resid > 0 else math.nan
    p = float(table["Pr(>F)"].iloc[1]) if full.df_resid > 0 else math.nan
    return {"term": term, "kind": kind, "knobs": knobs, "df": df, "sum_sq": ss,
            "F": f, "p_value": p}
