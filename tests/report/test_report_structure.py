"""Guards on the report package's structure: short functions, templates shipped."""

import ast
from pathlib import Path

import physweep.report

REPORT = Path(physweep.report.__file__).parent
MAX_LINES = 80


def _functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_report_functions_are_short():
    """No function of physweep.report longer than 80 lines (decorators and signature
    included): the report is built from small section functions and templates."""
    long = []
    for path in sorted(REPORT.glob("*.py")):
        for fn in _functions(ast.parse(path.read_text())):
            start = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
            n = fn.end_lineno - start + 1
            if n > MAX_LINES:
                long.append(f"{path.name}:{fn.lineno} {fn.name} ({n} lines)")
    assert not long, "functions over 80 lines: " + ", ".join(long)


def test_templates_are_package_data():
    """The templates the report renders exist in the package and pyproject ships them."""
    import tomllib

    templates = sorted(p.name for p in (REPORT / "templates").glob("*.html"))
    assert {"base.html", "macros.html", "round.html", "index.html"} <= set(templates)
    pyproject = tomllib.loads((REPORT.parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["physweep"]
    assert "report/templates/*.html" in patterns
    assert "Jinja2==3.1.6" in pyproject["project"]["dependencies"]
