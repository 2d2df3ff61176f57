"""Cross-round index page: links every round report and shows what each round inherited."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from physweep.io import write_text
from physweep.report.html import esc, page

__all__ = ["build_index"]


def _read_winners(path: Path | None) -> tuple[dict[str, Any], str | None]:
    if path is None:
        return {}, "no winners file"
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return {}, f"cannot read {path}: {exc}"
    return (data, None) if isinstance(data, Mapping) else ({}, f"{path}: not a mapping")


def _codes(items) -> str:
    return ", ".join(f"<code>{esc(i)}</code>" for i in items) if items else "—"


def build_index(
    rounds: dict[str, Path], winners: dict[str, Path], out_html: Path
) -> Path:
    """Write an index of round reports (atomically) and return its path.

    ``rounds`` maps round name -> its HTML report, in round order; ``winners`` maps round name ->
    its winners YAML (``{objective, winners, fixed_for_next}``). For each round the page lists
    its objective and winners, what it fixes for later rounds, and what it *inherited*: the
    knobs fixed by earlier rounds (a later round's value overrides an earlier one) together
    with the round and winners each came from. Links are relative to ``out_html``.
    """
    out_html = Path(out_html)
    base = out_html.parent
    inherited: dict[str, tuple[Any, str, list[str]]] = {}  # knob -> (value, round, winners)
    rows = []
    for name, report in rounds.items():
        data, problem = _read_winners(winners.get(name))
        won = [str(w) for w in (data.get("winners") or [])]
        fixed = data.get("fixed_for_next") or {}
        fixed = fixed if isinstance(fixed, Mapping) else {}
        href = Path(os.path.relpath(Path(report), base)).as_posix()
        exists = Path(report).exists()
        link = f'<a href="{esc(href)}">{esc(name)}</a>' + ("" if exists else " (not built)")
        inh = "<br>".join(
            f"<code>{esc(k)} = {esc(v)}</code> from {esc(r)} (winners {_codes(w)})"
            for k, (v, r, w) in inherited.items()) or "nothing (first round)"
        rows.append(
            "<tr>"
            f'<td class="text">{link}</td>'
            f'<td class="text">{esc(data.get("objective", "—"))}</td>'
            f'<td class="text">{_codes(won)}</td>'
            f'<td class="text">{inh}</td>'
            f'<td class="text">{"<br>".join(f"<code>{esc(k)} = {esc(v)}</code>" for k, v in fixed.items()) or "—"}</td>'  # noqa: E501
            f'<td class="text">{esc(problem or "")}</td>'
            "</tr>")
        for k, v in fixed.items():
            inherited[str(k)] = (v, name, won)
    head = "".join(f"<th>{h}</th>" for h in (
        "round", "objective", "winners", "inherited from earlier rounds", "fixes for next",
        "notes"))
    final = "".join(f"<li><code>{esc(k)} = {esc(v)}</code> (from {esc(r)})</li>"
                    for k, (v, r, _) in inherited.items()) or "<li>nothing fixed yet</li>"
    body = (
        "<h1>physweep: rounds</h1>"
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
        + "\n".join(rows) + "</tbody></table></div>"
        "<h2>Configuration after the last round</h2>"
        f"<ul>{final}</ul>")
    write_text(out_html, page("physweep rounds", body))
    return out_html
