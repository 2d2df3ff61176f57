"""Cross-round page ``results/report.html``: what each round inherited, fixed, swept and won.

Per round it states exactly what its round file says (``inherit:`` with the values taken from
the source round's winner, ``fixed:``, the swept knobs with their levels) beside what the round
produced (its winner, the objective score with the persistence and reference-model nRMSE of the
same samples, from ``ranking.csv``; the training compute used and saved by early stopping, per
training as the round report counts it: ``ranking.csv`` with the ``plan.json``, decisions and
stage identity records beside it, see :func:`physweep.report.model.ranking_summary`).
One table ends the page: the configuration after the last round, each knob with its value and
the round that decided it. The page is built for a 1,300-pixel window: long names wrap instead
of widening the page.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from markupsafe import Markup

from physweep.io import write_text
from physweep.report.html import esc, is_missing, render
from physweep.report.model import RankingSummary, num, ranking_summary

__all__ = ["build_index"]

MISSING = "—"

INDEX_CSS = """
body { max-width: 1240px; }
table.idx { width: 100%; table-layout: auto; }
table#final { width: auto; min-width: 60%; }
table.idx th, table.idx td { white-space: normal; text-align: left; vertical-align: top;
       overflow-wrap: break-word; }
table.idx td.num, table.idx th.num { text-align: right; }
table.idx td.name { white-space: nowrap; }
.cards { display: flex; flex-wrap: wrap; gap: 0.5em 1.5em; align-items: flex-start; }
.cards > div { flex: 1 1 20em; min-width: 0; }
.cards > div.fixed { flex: 1 1 14em; } .cards > div.swept { flex: 1.6 1 26em; }
.cards table { width: 100%; }
.cards h4 { margin: 0.6em 0 0.2em; font-size: 100%; }
section.round { border-top: 1px solid #ccc; margin-top: 1.2em; }
section.round h2 { border-bottom: none; margin-bottom: 0.2em; }
p.note { margin: 0.3em 0; }
"""


# ---------------------------------------------------------------------------------------------
# reading


def _read_winners(path: Path | None) -> tuple[dict[str, Any], str | None]:
    if path is None:
        return {}, "no winners file"
    if not Path(path).exists():
        return {}, "not finished: no winners.yaml yet"
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return {}, f"cannot read {path}: {exc}"
    return (data, None) if isinstance(data, Mapping) else ({}, f"{path}: not a mapping")


def _winner_knobs(data: Mapping[str, Any]) -> dict[str, Any]:
    """Knob values of the round's winner (``fixed_for_next``, else ``best.knobs``)."""
    for knobs in (data.get("fixed_for_next"), (data.get("best") or {}).get("knobs")
                  if isinstance(data.get("best"), Mapping) else None):
        if isinstance(knobs, Mapping) and knobs:
            return {str(k): v for k, v in knobs.items()}
    return {}


# ---------------------------------------------------------------------------------------------
# the round files


def _same(a: Any, b: Any) -> bool:
    from physweep.plan.knobs import same_value

    return same_value(a, b)


def _val(value: Any) -> str:
    """Knob value as the run names and ``physweep plan`` write it (2e-4, 0.05, true)."""
    if value is None:
        return MISSING
    from physweep.plan.knobs import format_value

    try:
        return format_value(value)
    except (ValueError, TypeError):
        return str(value)


def _swept(cfg: Mapping[str, Any]) -> dict[str, dict[str, list]]:
    """knob -> {"levels": [...], "blocks": [...]} over every block of a round file."""
    out: dict[str, dict[str, list]] = {}

    def add(knob: str, value: Any, block: str) -> None:
        entry = out.setdefault(str(knob), {"levels": [], "blocks": []})
        if not any(_same(value, v) for v in entry["levels"]):
            entry["levels"].append(value)
        if block not in entry["blocks"]:
            entry["blocks"].append(block)

    for b in cfg.get("blocks") or []:
        name = str(b.get("name", "?"))
        design = b.get("design") or {}
        if design.get("type") == "list":
            for run in design.get("runs") or []:
                for k, v in (run or {}).items():
                    add(k, v, name)
        for k, levels in (b.get("knobs") or {}).items():
            for v in levels or []:
                add(k, v, name)
    return out


def _block_fixed(cfg: Mapping[str, Any]) -> dict[str, tuple[Any, list[str]]]:
    """knob -> (value, blocks) of the blocks' own ``fixed:`` values."""
    out: dict[str, tuple[Any, list[str]]] = {}
    for b in cfg.get("blocks") or []:
        for k, v in (b.get("fixed") or {}).items():
            out.setdefault(str(k), (v, []))[1].append(str(b.get("name", "?")))
    return out


def _inherit(cfg: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    return [(str(i.get("round")), [str(k) for k in i.get("knobs") or []])
            for i in cfg.get("inherit") or [] if isinstance(i, Mapping)]


@dataclass
class _Round:
    name: str
    report: Path
    cfg: Mapping[str, Any] | None
    winners: dict[str, Any]
    problem: str | None
    knobs: dict[str, Any]  # the winner's knob values
    ranking: RankingSummary

    @property
    def winner_names(self) -> list[str]:
        return [str(w) for w in (self.winners.get("winners") or [])]

    @property
    def swept(self) -> dict[str, dict[str, list]]:
        return _swept(self.cfg) if self.cfg else {}

    @property
    def fixed(self) -> dict[str, Any]:
        return {str(k): v for k, v in ((self.cfg or {}).get("fixed") or {}).items()}

    @property
    def inherit(self) -> list[tuple[str, list[str]]]:
        return _inherit(self.cfg) if self.cfg else []

    def winner_block(self) -> str | None:
        row = self.ranking.winner
        return str(row["block"]) if row and not is_missing(row.get("block")) else None


# ---------------------------------------------------------------------------------------------
# provenance of the final configuration


def _decide(rounds: dict[str, _Round], name: str, knob: str, seen: frozenset = frozenset()
            ) -> tuple[str, str | None, Any]:
    """(how, round, value-if-known-from-config) for ``knob`` in round ``name``'s winner:
    how = "swept" | "fixed" | "default" | "unknown". Follows ``inherit:`` back to the round
    that swept or fixed the knob (a round's ``fixed:`` overrides what it inherits, a sweep
    overrides both, as in the planner)."""
    r = rounds.get(name)
    if r is None or r.cfg is None or name in seen:
        return "unknown", name if r is not None else None, None
    if knob in r.swept:
        return "swept", name, None
    bfixed = _block_fixed(r.cfg)
    if knob in bfixed:
        value, blocks = bfixed[knob]
        wb = r.winner_block()
        if wb is None or wb in blocks:
            return "fixed", name, value
    if knob in r.fixed:
        return "fixed", name, r.fixed[knob]
    for src, knobs in reversed(r.inherit):
        if knob in knobs:
            return _decide(rounds, src, knob, seen | {name})
    return "default", None, None


# ---------------------------------------------------------------------------------------------
# HTML


def _code(text: Any) -> Markup:
    """``<code>`` that may wrap after ``_`` and ``~`` (run and knob names are long)."""
    return Markup("<code>" + re.sub(r"([_~])", r"\1<wbr>", esc(text)) + "</code>")


def _codes(items: Sequence[Any]) -> Markup:
    return Markup(", ").join(_code(i) for i in items)


def _pending(src: Any) -> Markup:
    return Markup('<span class="muted">pending ({} has no winner yet)</span>').format(src)


def _score(value: Any) -> str:
    v = num(value)
    if not math.isfinite(v):
        return MISSING if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v:.4g}"


def _metric(r: _Round, column: str) -> str:
    """A ranking.csv column of the winner's row; "—" when the column or value is missing."""
    row = r.ranking.winner
    if row is None or column not in r.ranking.columns:
        return MISSING
    return _score(row.get(column))


#: marks the compute of a round whose plan.json records no trainings (the page's footnote)
PER_RUN_MARK = "*"


def _compute(r: _Round) -> tuple[Any, Any]:
    """Training compute used and saved by early stopping, per training, in training budgets
    and % of the exhaustive budget (every training to the end)."""
    rk = r.ranking
    n = rk.n_trainings
    if not math.isfinite(rk.used) or not n:
        return MISSING, MISSING
    mark = Markup("<sup>{}</sup>").format(PER_RUN_MARK) if rk.per_run else ""
    used = (f"{rk.used:.3g} of {n} training budget{'s' if n != 1 else ''} "
            f"({100 * rk.used / n:.0f}%)"
            + (f", {rk.steps_used:,.0f} steps" if math.isfinite(rk.steps_used) else "")
            + (f"; {rk.n_copied} copied from identical trainings, counted 0" if rk.n_copied
               else ""))
    if not math.isfinite(rk.saved):
        return used + mark, MISSING
    saved = (f"{rk.saved:.3g} training budgets ({100 * rk.saved / n:.0f}%) on "
             f"{rk.n_stopped} training{'s' if rk.n_stopped != 1 else ''} stopped at the probe"
             + (f", {rk.steps_saved:,.0f} steps" if math.isfinite(rk.steps_saved)
                and rk.n_stopped else ""))
    return used + mark, saved


def _link(r: _Round, base: Path) -> Markup:
    href = Path(os.path.relpath(Path(r.report), base)).as_posix()
    built = Path(r.report).exists()
    return Markup('<a href="{}">{}</a>').format(href, r.name) + ("" if built else " (not built)")


SUMMARY_HEADERS = ["round", "objective", "winner", "score", "full-eval score", "nRMSE",
                   "persistence nRMSE", "reference nRMSE", "training compute used",
                   "saved by early stopping"]
SUMMARY_NUM = {3, 4, 5, 6, 7}


def _summary_row(r: _Round, base: Path) -> list[Any]:
    objective = r.winners.get("objective") or (r.cfg or {}).get("objective") or MISSING
    unit = r.winners.get("cost_unit")
    score = _metric(r, "score") if r.ranking.winner is not None else MISSING
    used, saved = _compute(r)
    return [
        _link(r, base),
        Markup("{}").format(objective)
        + (Markup(' <span class="muted">({})</span>').format(unit) if unit else ""),
        _codes(r.winner_names) or (r.problem or MISSING),
        score, _metric(r, "full_score"), _metric(r, "nrmse"), _metric(r, "nrmse_persistence"),
        _metric(r, "nrmse_reference"), used, saved,
    ]


def _inherit_note(k: str, r: _Round, src: str, src_knobs: Mapping[str, Any]) -> Markup:
    if k in r.fixed:
        return Markup("overridden: fixed {} here").format(_code(_val(r.fixed[k])))
    if k in r.swept:
        return Markup("overridden: swept here")
    if k in src_knobs and k in r.knobs and not _same(src_knobs[k], r.knobs[k]):
        return Markup("⚠ this round's winner ran with {}: {}'s winner changed since (rerun "
                      "this round)").format(_code(_val(r.knobs[k])), src)
    return Markup("")


def _inherited(r: _Round, rounds: dict[str, _Round]) -> SimpleNamespace:
    """Exactly the round file's inherit list, each value from the source round's winner."""
    rows, sources = [], []
    for src, knobs in r.inherit:
        sr = rounds.get(src)
        src_knobs = sr.knobs if sr else {}
        src_win = _codes(sr.winner_names) if sr else ""
        sources.append(Markup("{}: {}").format(src, src_win) if src_win else
                       Markup("{}: {}").format(src, "not in this workflow" if sr is None
                                               else "none yet"))
        for k in knobs:
            value = _code(_val(src_knobs[k])) if k in src_knobs else _pending(src)
            rows.append([_code(k), value, src, _inherit_note(k, r, src, src_knobs)])
    headers = ["knob", "value", "from", "note"]
    if rows and not any(row[3] for row in rows):
        rows, headers = [row[:3] for row in rows], headers[:3]
    empty = ("nothing (first round)" if r.cfg is not None and not r.inherit
             else "nothing" if r.cfg is not None else MISSING)
    return SimpleNamespace(headers=headers, rows=rows, empty=empty,
                           sources=Markup("; ").join(sources))


def _fixed(r: _Round) -> SimpleNamespace:
    """The round file's fixed (every block), then the blocks' own fixed values."""
    rows = [[_code(k), _code(_val(v)), "every block"] for k, v in r.fixed.items()]
    if r.cfg is not None:
        for k, (v, blocks) in _block_fixed(r.cfg).items():
            rows.append([_code(k), _code(_val(v)), "block " + ", ".join(blocks) + " only"])
    return SimpleNamespace(rows=rows, empty="nothing" if r.cfg is not None else MISSING)


def _block_notes(r: _Round) -> list[Markup]:
    notes = []
    for b in (r.cfg or {}).get("blocks") or []:
        ffb = b.get("fixed_from_block")
        if isinstance(ffb, Mapping):
            notes.append(Markup("block {} runs at the best {} of block {}").format(
                b.get("name"), _codes(ffb.get("knobs") or []), ffb.get("block")))
        comp = (b.get("compute") or {}).get("batch_tokens")
        if isinstance(comp, Mapping):
            lr = (b.get("compute") or {}).get("lr_scaling")
            notes.append(Markup("block {}: batch_tokens {} in {}").format(
                b.get("name"), comp.get("rule"), _code(comp.get("scale_with")))
                + (Markup(", LR scaled {}").format(lr) if lr else ""))
    return notes


def _swept_card(r: _Round) -> SimpleNamespace:
    """Levels from the round file, the winner's value."""
    rows = []
    for k, entry in r.swept.items():
        levels = ", ".join(_val(v) for v in entry["levels"])
        won = _code(_val(r.knobs[k])) if k in r.knobs else MISSING
        rows.append([_code(k), levels, ", ".join(entry["blocks"]), won])
    return SimpleNamespace(rows=rows, empty="nothing" if r.cfg is not None else MISSING,
                           notes=Markup("; ").join(_block_notes(r)))


def _round_context(r: _Round, rounds: dict[str, _Round], base: Path) -> SimpleNamespace:
    notes = []
    if r.cfg is None:
        notes.append("round file not available: inherited, fixed and swept knobs unknown")
    notes += [p for p in (r.problem, r.ranking.problem) if p]
    return SimpleNamespace(
        name=r.name, link=_link(r, base), title=(r.cfg or {}).get("title"),
        winners=_codes(r.winner_names), reason=r.winners.get("reason"),
        inherited=_inherited(r, rounds), fixed=_fixed(r), swept=_swept_card(r), notes=notes)


def _final_rows(rounds: dict[str, _Round], defaults: Mapping[str, Any] | None
                ) -> tuple[str, list[list[Any]]]:
    last = list(rounds.values())[-1]
    knobs: list[str] = list(defaults or {})
    for r in rounds.values():
        for k in [*r.knobs, *r.swept, *r.fixed, *(k for _, ks in r.inherit for k in ks)]:
            if k not in knobs:
                knobs.append(k)
    rows = []
    for k in knobs:
        how, where, cfg_value = _decide(rounds, last.name, k)
        if k in last.knobs:
            value = _code(_val(last.knobs[k]))
        elif how == "swept":
            value = _pending(where)
        elif how == "fixed":
            value = _code(_val(cfg_value))
        elif how == "default" and defaults is not None and k in defaults:
            value = _code(_val(defaults[k]))
        else:
            value = MISSING
        decided = {"swept": f"{where} (swept)", "fixed": f"{where} (fixed)",
                   "default": "default"}.get(how, "unknown" + (f" ({where}: no round file)"
                                                              if where else ""))
        rows.append([_code(k), value, decided])
    return last.name, rows


def _load_round(name: str, report: Path, winners: Path | None, cfg: Any,
                ranking: Path | None) -> _Round:
    data, problem = _read_winners(winners)
    won = [str(w) for w in (data.get("winners") or [])]
    return _Round(name=name, report=Path(report), cfg=cfg if isinstance(cfg, Mapping) else None,
                  winners=data, problem=problem, knobs=_winner_knobs(data),
                  ranking=ranking_summary(ranking, won))


def build_index(
    rounds: dict[str, Path], winners: dict[str, Path], out_html: Path, *,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    rankings: Mapping[str, Path] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Path:
    """Write the cross-round page (atomically) and return its path.

    ``rounds`` maps round name -> its HTML report, in round order; ``winners`` maps round name
    -> its winners YAML (``{objective, winners, reason, best, fixed_for_next}``); ``configs``
    maps round name -> its round file as loaded (``inherit``, ``fixed``, ``blocks``, ...);
    ``rankings`` maps round name -> its ranking.csv (winner's score, the ``nrmse_persistence``
    and ``nrmse_reference`` baselines, ``compute_fraction``/``train_steps``; missing columns
    show "—"); ``defaults`` are the knob defaults of config/config.yaml. Links are relative
    to ``out_html``.
    """
    out_html = Path(out_html)
    base = out_html.parent
    configs, rankings = configs or {}, rankings or {}
    loaded = {name: _load_round(name, report, winners.get(name), configs.get(name),
                                rankings.get(name)) for name, report in rounds.items()}
    last, final = _final_rows(loaded, defaults) if loaded else ("", [])
    per_run = [r.name for r in loaded.values() if r.ranking.per_run]
    html = render("index.html", title="physweep rounds", index_css=Markup(INDEX_CSS),
                  rounds=[_round_context(r, loaded, base) for r in loaded.values()],
                  summary_headers=SUMMARY_HEADERS, summary_num=SUMMARY_NUM,
                  summary_rows=[_summary_row(r, base) for r in loaded.values()],
                  per_run=per_run, per_run_mark=PER_RUN_MARK, last=last, final_rows=final)
    write_text(out_html, html)
    return out_html
