"""HTML of the self-contained reports: Jinja2 templates (``templates/``) and their cell values.

Everything is inline (CSS, a few lines of JS, figures as base64 PNG data URIs), so a report opens
from disk with no network access. Templates are rendered by :func:`render`; table cells are
:class:`Cell` values (shown text, sort key, classes) made by :func:`make_cell`.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

NOT_MEASURED = "not measured"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1400px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em;
       margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { background: #e4e4e4; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
td.text, th.text { text-align: left; }
td.wrap { white-space: normal; min-width: 20em; }
td.cmd { white-space: normal; word-break: break-all; min-width: 24em; } td.wrap pre { max-height: 30em; }
h3 { margin-bottom: 0.3em; }
tr.winner td { background: #fff4c2; font-weight: 600; }
tr.promoted td:first-child { border-left: 4px solid #3b7dd8; }
tr.diverged td, tr.failed td { color: #a00; }
td.nm { color: #999; font-style: italic; }
td.pass { background: #dff0d8; } td.fail { background: #f6d3d0; }
.scroll { overflow-x: auto; max-height: 80vh; }
.warn { background: #fff3cd; border: 1px solid #e0c36c; padding: 0.5em 1em; }
.muted { color: #666; font-size: 90%; }
figure { margin: 1em 0; } figcaption { color: #444; font-size: 90%; max-width: 900px; }
img { max-width: 100%; border: 1px solid #eee; }
code, pre { background: #f6f6f6; padding: 1px 4px; font-size: 12px; }
pre { padding: 0.6em; overflow-x: auto; }
ul.summary li { margin: 0.2em 0; }
"""

# Click a header to sort; numbers (data-v) numerically, text otherwise, "not measured" last.
SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col];
        if (!cell) { return null; }
        var v = cell.getAttribute('data-v');
        if (v === null || v === '') { return null; }
        var n = Number(v);
        return isNaN(n) ? v.toLowerCase() : n;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null && y === null) { return 0; }
        if (x === null) { return 1; }
        if (y === null) { return -1; }
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        var c = x < y ? -1 : (x > y ? 1 : 0);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import numpy as np

        if isinstance(value, np.floating) and np.isnan(value):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(value, str) and value.strip().lower() in ("", "nan")


def fmt(value: Any, missing: str = NOT_MEASURED) -> str:
    """Readable cell text: 4 significant digits for floats, ``missing`` for NaN/None."""
    if is_missing(value):
        return missing
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        v = float(value)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4g}"
    return str(value)


@dataclass(frozen=True)
class Cell:
    """One table cell: the text shown, the ``data-v`` sort key, the ``class`` attribute."""

    text: Any
    key: str = ""
    cls: str = ""


def make_cell(value: Any, *, text: Any = None, cls: str = "", sort_value: Any = None) -> Cell:
    """A cell with a ``data-v`` sort key (empty for missing values); ``text`` may be Markup."""
    missing = is_missing(value) if text is None else False
    shown = fmt(value) if text is None else text
    key = value if sort_value is None else sort_value
    if isinstance(key, bool):
        key = int(key)
    key_s = "" if is_missing(key) else str(key)
    if isinstance(key, float) and math.isinf(key):
        key_s = "Infinity" if key > 0 else "-Infinity"  # what JS Number() parses
    classes = [c for c in (cls, "nm" if missing else "") if c]
    if isinstance(value, str) and not classes:
        classes.append("text")
    return Cell(text=shown, key=key_s, cls=" ".join(classes))


def img_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _finalize(value: Any) -> Any:
    """Escape as :func:`esc` does (``&quot;``, ``&#x27;``) what is not already Markup."""
    if hasattr(value, "__html__"):
        return value
    return Markup(esc(value))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("physweep.report", "templates"),
                             autoescape=True, finalize=_finalize, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["data_uri"] = img_data_uri
    env.globals.update(css=Markup(CSS), sort_js=Markup(SORT_JS), NOT_MEASURED=NOT_MEASURED)
    return env


def render(template: str, **context: Any) -> Markup:
    """Render one of the package's templates (Markup: safe to put in another template)."""
    return Markup(environment().get_template(template).render(**context))
