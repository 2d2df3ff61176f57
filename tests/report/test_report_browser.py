"""The round report in a real browser (headless Chromium): no console errors, every image
loads, clicking a ranking header sorts the rows; a screenshot is kept in test-artifacts/."""

import math
from pathlib import Path

import chromium as browser  # tests/chromium.py (tests/ is on the pytest pythonpath)
import pytest
from synthetic_round import make_round

from physweep.report import build_round_report

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"




@pytest.fixture(scope="module")
def chromium():
    path, why = browser.ensure_chromium()
    if not path:
        pytest.skip(f"headless Chromium unavailable: {why}")
    return path


@pytest.fixture(scope="module")
def built_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser_round")
    inputs = make_round(root, n_runs=14)
    return build_round_report(**inputs, out_html=root / "report.html")


def _numbers(keys):
    return [None if k is None else float(k) for k in keys]


def _ordered(keys, ascending):
    vals = [k for k in keys if k is not None]
    nulls = keys[len(vals):]
    return all(n is None for n in nulls) and vals == sorted(vals, reverse=not ascending)


def test_report_in_headless_chromium(chromium, built_report):
    h = browser
    res = h.check_page(chromium, built_report, table_id="ranking", column="score")
    assert res["errors"] == []
    assert len(res["images"]) >= 7
    broken = [i for i in res["images"] if not (i["complete"] and i["width"] > 0)]
    assert broken == []

    sort = res["sort"]
    assert sort["column"] >= 0, sort["headers"]
    before, once, twice = (_numbers(sort[k]) for k in ("before", "after_one_click",
                                                        "after_two_clicks"))
    assert sorted(map(str, before)) == sorted(map(str, once))  # same rows, new order
    assert math.inf in once  # the diverged run's score sorts as a number, not as text
    assert once != before  # the synthetic ranking is in rank order, not score order
    assert _ordered(once, ascending=True) and _ordered(twice, ascending=False)
    assert "desc" in sort["header_class"]
    finite = [v for v in once if v is not None and math.isfinite(v)]
    assert finite[0] == min(finite)

    out = h.screenshot(chromium, built_report, ARTIFACTS / "round_report.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_browser_check_detects_problems(chromium, tmp_path):
    """The harness is not vacuous: a broken image and a script error are reported."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img alt="broken" src="data:image/png;base64,AAAA">'
        '<table id="ranking"><thead><tr><th>score</th></tr></thead><tbody>'
        '<tr><td data-v="2">2</td></tr><tr><td data-v="1">1</td></tr></tbody></table>'
        "<script>undefinedFunction();</script></body></html>")
    res = browser.check_page(chromium, page)
    assert any("undefinedFunction" in e for e in res["errors"])
    assert res["images"][0]["width"] == 0
    assert res["sort"]["after_one_click"] == res["sort"]["before"]  # no sort script here
