"""Cross-round page ``results/report.html``: what each round inherited, fixed, swept and won.

Per round it states exactly what its round file says (``inherit:`` with the values taken from
the source round's winner, ``fixed:``, the swept knobs with their levels) beside what the round
produced (its winner, the objective score with the persistence and reference-model nRMSE of the
same samples, the training compute used and saved by early stopping, from ``ranking.csv``).
One table ends the page: the configuration after the last round, each knob with its value and
the round that decided it. The page is built for a 1,300-pixel window: long names wrap instead
of widening the page.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from physweep.io import write_text
from physweep.report.html import CSS, esc, is_missing

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


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    try:
        return bool(value) and not is_missing(value)
    except (TypeError, ValueError):
        return False


@dataclass
class _Ranking:
    """What the index takes from a round's ranking.csv."""

    winner: dict[str, Any] | None = None  # the winner's row
    columns: set[str] = field(default_factory=set)
    n_runs: int = 0
    used: float = math.nan  # run budgets used (sum of compute_fraction)
    saved: float = math.nan  # run budgets saved by early stopping
    steps_used: float = math.nan
    steps_saved: float = math.nan
    n_stopped: int = 0
    problem: str | None = None


def _read_ranking(path: Path | None, winners: Sequence[str]) -> _Ranking:
    if path is None:
        return _Ranking()
    if not Path(path).exists():
        return _Ranking(problem="no ranking.csv yet")
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        return _Ranking(problem=f"cannot read {path}: {exc}")
    out = _Ranking(columns=set(df.columns), n_runs=len(df))
    rows = df.to_dict("records")
    if "winner" in df.columns:
        out.winner = next((r for r in rows if _truthy(r.get("winner"))), None)
    if out.winner is None and winners and "run" in df.columns:
        out.winner = next((r for r in rows if str(r.get("run")) == str(winners[0])), None)
    if "compute_fraction" in df.columns and rows:
        fracs = [_num(r.get("compute_fraction")) for r in rows]
        if any(math.isfinite(f) for f in fracs):
            out.used = sum(f for f in fracs if math.isfinite(f))
            stopped = [(r, f) for r, f in zip(rows, fracs, strict=True)
                       if str(r.get("status")) == "early_stopped" and math.isfinite(f)]
            out.n_stopped = len(stopped)
            out.saved = sum(1.0 - f for _, f in stopped) if "status" in df.columns else math.nan
            if "train_steps" in df.columns:
                steps = [_num(r.get("train_steps")) for r in rows]
                if all(math.isfinite(s) for s in steps):
                    out.steps_used = sum(steps)
                    out.steps_saved = sum(_num(r.get("train_steps")) * (1 - f) / f
                                          for r, f in stopped if f > 0)
    return out


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
    ranking: _Ranking

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


def _code(text: Any) -> str:
    """``<code>`` that may wrap after ``_`` and ``~`` (run and knob names are long)."""
    return "<code>" + re.sub(r"([_~])", r"\1<wbr>", esc(text)) + "</code>"


def _kv_table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str,
              table_id: str = "") -> str:
    if not rows:
        return f'<p class="note muted">{empty}</p>'
    tid = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="idx"{tid}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _score(value: Any) -> str:
    v = _num(value)
    if not math.isfinite(v):
        return MISSING if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v:.4g}"


def _metric(r: _Round, column: str) -> str:
    """A ranking.csv column of the winner's row; "—" when the column or value is missing."""
    row = r.ranking.winner
    if row is None or column not in r.ranking.columns:
        return MISSING
    return _score(row.get(column))


def _compute(r: _Round) -> tuple[str, str]:
    rk = r.ranking
    if not math.isfinite(rk.used) or not rk.n_runs:
        return MISSING, MISSING
    used = (f"{rk.used:.3g} of {rk.n_runs} run budgets ({100 * rk.used / rk.n_runs:.0f}%)"
            + (f", {rk.steps_used:,.0f} steps" if math.isfinite(rk.steps_used) else ""))
    if not math.isfinite(rk.saved):
        return used, MISSING
    saved = (f"{rk.saved:.3g} run budgets ({100 * rk.saved / rk.n_runs:.0f}%) by "
             f"{rk.n_stopped} early stop{'s' if rk.n_stopped != 1 else ''}"
             + (f", {rk.steps_saved:,.0f} steps" if math.isfinite(rk.steps_saved)
                and rk.n_stopped else ""))
    return used, saved


def _link(r: _Round, base: Path) -> str:
    href = Path(os.path.relpath(Path(r.report), base)).as_posix()
    built = Path(r.report).exists()
    return f'<a href="{esc(href)}">{esc(r.name)}</a>' + ("" if built else " (not built)")


def _summary_table(rounds: list[_Round], base: Path) -> str:
    headers = ["round", "objective", "winner", "score", "full-eval score", "nRMSE",
               "persistence nRMSE", "reference nRMSE", "training compute used",
               "saved by early stopping"]
    num = {3, 4, 5, 6, 7}
    head = "".join(f'<th{" class=num" if i in num else ""}>{esc(h)}</th>'
                   for i, h in enumerate(headers))
    body = []
    for r in rounds:
        objective = r.winners.get("objective") or (r.cfg or {}).get("objective") or MISSING
        unit = r.winners.get("cost_unit")
        score = _metric(r, "score") if r.ranking.winner is not None else MISSING
        used, saved = _compute(r)
        cells = [
            _link(r, base),
            esc(objective) + (f' <span class="muted">({esc(unit)})</span>' if unit else ""),
            ", ".join(_code(w) for w in r.winner_names) or esc(r.problem or MISSING),
            score, _metric(r, "full_score"), _metric(r, "nrmse"), _metric(r, "nrmse_persistence"),
            _metric(r, "nrmse_reference"), esc(used), esc(saved),
        ]
        cls = {**{i: "num" for i in num}, 0: "name", 1: "name"}
        body.append("<tr>" + "".join(
            f'<td{f" class={cls[i]}" if i in cls else ""}>{c}</td>' for i, c in enumerate(cells))
            + "</tr>")
    return (f'<table class="idx" id="rounds"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table>")


def _round_section(r: _Round, rounds: dict[str, _Round], base: Path) -> str:
    title = (r.cfg or {}).get("title")
    parts = [f'<section class="round" id="round-{esc(r.name)}">',
             f"<h2>{_link(r, base)}" + (f" — {esc(title)}" if title else "") + "</h2>"]
    notes = []
    if r.cfg is None:
        notes.append("round file not available: inherited, fixed and swept knobs unknown")
    if r.problem:
        notes.append(r.problem)
    if r.ranking.problem:
        notes.append(r.ranking.problem)
    win = r.winner_names
    if win:
        reason = r.winners.get("reason")
        parts.append(f'<p class="note"><b>Winner:</b> {", ".join(_code(w) for w in win)}'
                     + (f' <span class="muted">— {esc(reason)}</span>' if reason else "")
                     + "</p>")
    swept, fixed = r.swept, r.fixed

    # inherited: exactly the round file's inherit list, value from the source round's winner
    inh_rows, sources = [], []
    for src, knobs in r.inherit:
        sr = rounds.get(src)
        src_knobs = sr.knobs if sr else {}
        src_win = ", ".join(_code(w) for w in sr.winner_names) if sr else ""
        sources.append(f"{esc(src)}: {src_win}" if src_win else
                       f"{esc(src)}: {'not in this workflow' if sr is None else 'none yet'}")
        for k in knobs:
            if k in src_knobs:
                value = _code(_val(src_knobs[k]))
            else:
                value = f'<span class="muted">pending ({esc(src)} has no winner yet)</span>'
            note = []
            if k in fixed:
                note.append(f"overridden: fixed {_code(_val(fixed[k]))} here")
            elif k in swept:
                note.append("overridden: swept here")
            elif k in src_knobs and k in r.knobs and not _same(src_knobs[k], r.knobs[k]):
                note.append(f"⚠ this round's winner ran with {_code(_val(r.knobs[k]))}: "
                            f"{esc(src)}'s winner changed since (rerun this round)")
            inh_rows.append([_code(k), value, esc(src), "; ".join(note)])
    if inh_rows and not any(row[3] for row in inh_rows):
        inh_rows = [row[:3] for row in inh_rows]
        inh_head = ["knob", "value", "from"]
    else:
        inh_head = ["knob", "value", "from", "note"]
    inh = _kv_table(inh_head, inh_rows,
                    "nothing (first round)" if r.cfg is not None and not r.inherit
                    else "nothing" if r.cfg is not None else MISSING)
    if sources:
        inh += ('<p class="note muted">from the winner of ' + "; ".join(sources) + "</p>")

    # fixed: the round file's fixed (every block), then the blocks' own fixed values
    fix_rows = [[_code(k), _code(_val(v)), "every block"] for k, v in fixed.items()]
    if r.cfg is not None:
        for k, (v, blocks) in _block_fixed(r.cfg).items():
            fix_rows.append([_code(k), _code(_val(v)),
                             "block " + ", ".join(esc(b) for b in blocks) + " only"])
    fix = _kv_table(["knob", "value", "scope"], fix_rows,
                    "nothing" if r.cfg is not None else MISSING)

    # swept: levels from the round file, the winner's value
    sw_rows = []
    for k, entry in swept.items():
        levels = ", ".join(_val(v) for v in entry["levels"])
        won = _code(_val(r.knobs[k])) if k in r.knobs else MISSING
        sw_rows.append([_code(k), esc(levels), esc(", ".join(entry["blocks"])), won])
    sw = _kv_table(["knob", "levels", "block", "winner"], sw_rows,
                   "nothing" if r.cfg is not None else MISSING)
    block_notes = []
    for b in (r.cfg or {}).get("blocks") or []:
        ffb = b.get("fixed_from_block")
        if isinstance(ffb, Mapping):
            block_notes.append(f"block {esc(b.get('name'))} runs at the best "
                               + ", ".join(_code(k) for k in ffb.get("knobs") or [])
                               + f" of block {esc(ffb.get('block'))}")
        comp = (b.get("compute") or {}).get("batch_tokens")
        if isinstance(comp, Mapping):
            lr = (b.get("compute") or {}).get("lr_scaling")
            block_notes.append(f"block {esc(b.get('name'))}: batch_tokens {esc(comp.get('rule'))}"
                               f" in {_code(comp.get('scale_with'))}"
                               + (f", LR scaled {esc(lr)}" if lr else ""))
    if block_notes:
        sw += '<p class="note muted">' + "; ".join(block_notes) + "</p>"

    parts.append('<div class="cards">'
                 f"<div><h4>Inherited</h4>{inh}</div>"
                 f'<div class="fixed"><h4>Fixed</h4>{fix}</div>'
                 f'<div class="swept"><h4>Swept</h4>{sw}</div></div>')
    if notes:
        parts.append('<p class="note warn">' + "; ".join(esc(n) for n in notes) + "</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _final_table(rounds: dict[str, _Round], defaults: Mapping[str, Any] | None) -> tuple[str, str]:
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
            value = f'<span class="muted">pending ({esc(where)} has no winner yet)</span>'
        elif how == "fixed":
            value = _code(_val(cfg_value))
        elif how == "default" and defaults is not None and k in defaults:
            value = _code(_val(defaults[k]))
        else:
            value = MISSING
        decided = {"swept": f"{esc(where)} (swept)", "fixed": f"{esc(where)} (fixed)",
                   "default": "default"}.get(how, "unknown" + (f" ({esc(where)}: no round file)"
                                                              if where else ""))
        rows.append([_code(k), value, decided])
    return last.name, _kv_table(["knob", "value", "decided by"], rows, "no knobs known",
                                table_id="final")


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
    configs = configs or {}
    rankings = rankings or {}
    loaded: dict[str, _Round] = {}
    for name, report in rounds.items():
        data, problem = _read_winners(winners.get(name))
        won = [str(w) for w in (data.get("winners") or [])]
        cfg = configs.get(name)
        loaded[name] = _Round(name=name, report=Path(report),
                              cfg=cfg if isinstance(cfg, Mapping) else None, winners=data,
                              problem=problem, knobs=_winner_knobs(data),
                              ranking=_read_ranking(rankings.get(name), won))
    order = list(loaded.values())
    body = [
        "<h1>physweep: rounds</h1>",
        '<p class="muted">Knob values are nominal (the playbook\'s sizes; the preset maps them '
        "to effective sizes). Score: the round's objective for its winner (lower is better) on "
        "the small eval, which ranks every run of a round; full-eval score: the same on the "
        "full eval, which picks the winner among the promoted runs; nRMSE (small eval) beside "
        "the persistence baseline and the reference model on the same samples. Compute in run "
        "budgets: one run trained to the end = 1.</p>",
    ]
    if order:
        body.append(_summary_table(order, base))
        body += [_round_section(r, loaded, base) for r in order]
        last, final = _final_table(loaded, defaults)
        body.append(f"<h2>Configuration after the last round ({esc(last)})</h2>")
        body.append('<p class="muted">Each knob\'s value in the winner of the last round, and '
                    "the round that decided it: the round that swept it, the round whose file "
                    "fixed it, or the default of config/config.yaml when no round did.</p>")
        body.append(final)
    else:
        body.append("<p>No rounds.</p>")
    html = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>physweep rounds</title><style>{CSS}{INDEX_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    write_text(out_html, html)
    return out_html
