"""Headless Chromium for the report browser test: find it, install it (Debian ``chromium``
via apt-get) when missing, and run a page with an embedded JS check.

CI can prepare the browser before the test run with ``python tests/chromium.py``
(exit status 0 = a usable chromium, 1 = none; the reason is printed).

The check needs no extra Python package: the page under test gets a small script injected at
the top of ``<head>`` that records console errors, uncaught exceptions and failed resource loads,
and after ``load`` checks every image, clicks a table header and records the resulting order;
the results land as JSON in a ``<pre>`` that ``chromium --headless --dump-dom`` prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]
RESULT_ID = "physweep-browser-check"


def find_chromium() -> str | None:
    env = os.environ.get("PHYSWEEP_CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium(install: bool = True, timeout: int = 900) -> tuple[str | None, str]:
    """Path of a chromium binary, installing Debian's ``chromium`` with apt-get when missing
    (needs root). Returns ``(path, "")`` or ``(None, reason)``."""
    path = find_chromium()
    if path or not install:
        return path, "" if path else "chromium not installed"
    if shutil.which("apt-get") is None:
        return None, "chromium not installed and apt-get not available"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return None, "chromium not installed and not root (cannot apt-get install chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
            if proc.returncode != 0:
                return None, f"{' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"apt-get install chromium failed: {exc}"
    path = find_chromium()
    return path, "" if path else "apt-get installed chromium but no binary was found"


def _run(chromium: str, args: list[str], timeout: int) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="physweep-chromium-") as profile:
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def screenshot(chromium: str, page: Path, out_png: Path, size=(1400, 3000),
               timeout: int = 120) -> Path:
    out_png.parent.mkdir(parents=True, exist_ok=True)
    _run(chromium, [f"--window-size={size[0]},{size[1]}", f"--screenshot={out_png}",
                    "--virtual-time-budget=5000", Path(page).resolve().as_uri()], timeout)
    return out_png


CHECK_JS = r"""
(function () {
  var errors = [];
  window.addEventListener('error', function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) {
      errors.push('failed to load ' + (t.tagName || '') + ' ' + String(t.src || t.href).slice(0, 80));
    } else {
      errors.push('uncaught: ' + (e.message || String(e.error)));
    }
  }, true);
  window.addEventListener('unhandledrejection', function (e) {
    errors.push('unhandled rejection: ' + String(e.reason));
  });
  ['error', 'warn'].forEach(function (level) {
    var orig = console[level];
    console[level] = function () {
      errors.push('console.' + level + ': ' + Array.prototype.join.call(arguments, ' '));
      return orig.apply(console, arguments);
    };
  });
  function keys(table, col) {
    return Array.prototype.map.call(table.tBodies[0].rows, function (row) {
      var v = row.cells[col].getAttribute('data-v');
      return v === null || v === '' ? null : v;
    });
  }
  window.addEventListener('load', function () {
    setTimeout(function () {
      var out = {errors: errors, images: [], sort: null};
      Array.prototype.forEach.call(document.images, function (img) {
        out.images.push({alt: img.alt, complete: img.complete, width: img.naturalWidth});
      });
      var table = document.getElementById(%(table_id)s);
      if (table) {
        var headers = Array.prototype.map.call(table.tHead.rows[0].cells,
                                               function (c) { return c.textContent.trim(); });
        var col = headers.indexOf(%(column)s);
        out.sort = {headers: headers, column: col, before: keys(table, col)};
        if (col >= 0) {
          table.tHead.rows[0].cells[col].click();
          out.sort.after_one_click = keys(table, col);
          table.tHead.rows[0].cells[col].click();
          out.sort.after_two_clicks = keys(table, col);
          out.sort.header_class = table.tHead.rows[0].cells[col].className;
        }
      }
      var pre = document.createElement('pre');
      pre.id = '%(result_id)s';
      pre.textContent = JSON.stringify(out);
      document.body.appendChild(pre);
    }, 50);
  });
})();
"""


def check_page(chromium: str, page: Path, *, table_id: str = "ranking", column: str = "score",
               timeout: int = 120) -> dict:
    """Open ``page`` (a copy with the check injected) headless; return the check's results:
    ``errors`` (console errors/warnings, uncaught exceptions, failed loads), ``images``
    (``alt, complete, width`` = naturalWidth) and ``sort`` (the ``column``'s keys before and
    after one and two clicks on its header)."""
    js = CHECK_JS % {"table_id": json.dumps(table_id), "column": json.dumps(column),
                     "result_id": RESULT_ID}
    return _run_script(chromium, page, js, "browser-check", ["--virtual-time-budget=10000",
                       "--run-all-compositor-stages-before-draw"], timeout)


def _run_script(chromium: str, page: Path, js: str, what: str, flags: list[str],
                timeout: int) -> dict:
    """Inject ``js`` into a copy of ``page``, dump its DOM headless and return the JSON the
    script left in ``<pre id=RESULT_ID>``."""
    import html as html_mod

    html = re.sub(r"<head>", lambda _: f"<head><script>{js}</script>",
                  Path(page).read_text(), count=1)
    probe = Path(page).with_name(f"{Path(page).stem}.{what}.html")
    probe.write_text(html)
    try:
        proc = _run(chromium, [*flags, "--dump-dom", probe.resolve().as_uri()], timeout)
    finally:
        probe.unlink(missing_ok=True)
    m = re.search(rf'<pre id="{RESULT_ID}"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    if not m:
        raise RuntimeError(f"chromium produced no {what} result (rc {proc.returncode}): "
                           f"{proc.stderr[-1000:]}")
    return json.loads(html_mod.unescape(m.group(1)))

WIDTH_JS = r"""
(function () {
  window.addEventListener('load', function () {
    setTimeout(function () {
      var vw = window.innerWidth, doc = document.documentElement;
      var wide = [];
      Array.prototype.forEach.call(document.body.querySelectorAll('*'), function (el) {
        var r = el.getBoundingClientRect();
        if (r.right > vw + 0.5 && wide.length < 10) {
          wide.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
                    + (el.className ? '.' + String(el.className).replace(/ /g, '.') : '')
                    + ' right=' + Math.round(r.right));
        }
      });
      var out = {innerWidth: vw, clientWidth: doc.clientWidth, scrollWidth: doc.scrollWidth,
                 bodyScrollWidth: document.body.scrollWidth, wide: wide};
      var pre = document.createElement('pre');
      pre.id = '%(result_id)s';
      pre.style.display = 'none';
      pre.textContent = JSON.stringify(out);
      document.body.appendChild(pre);
    }, 50);
  });
})();
"""


def page_width(chromium: str, page: Path, width: int = 1300, height: int = 900,
               timeout: int = 120) -> dict:
    """Open ``page`` headless in a ``width`` x ``height`` window; return ``innerWidth``,
    ``clientWidth``, the document's ``scrollWidth`` (wider than the viewport = horizontal
    scrolling), ``bodyScrollWidth`` and ``wide`` (up to 10 elements reaching past the right
    edge of the viewport)."""
    js = WIDTH_JS % {"result_id": RESULT_ID}
    return _run_script(chromium, page, js, "width-check",
                       [f"--window-size={width},{height}", "--virtual-time-budget=5000"], timeout)

if __name__ == "__main__":
    found, why = ensure_chromium()
    print(found or f"no chromium: {why}")
    sys.exit(0 if found else 1)
