"""physweep.report: self-contained HTML reports of sweep rounds (figures inline as PNG)."""

from physweep.report.figures import FIGURE_NAMES
from physweep.report.index import build_index
from physweep.report.round import DEFAULT_RERUN_HINT, build_round_report

__all__ = ["DEFAULT_RERUN_HINT", "FIGURE_NAMES", "build_index", "build_round_report"]
