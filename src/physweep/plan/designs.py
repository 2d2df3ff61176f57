"""Experimental designs over discrete knob levels.

Every design returns a list of *level-index* rows (one tuple per run, one index per knob), so the
properties each design claims (balance, one-per-stratum, estimable main effects) can be checked
on indices independent of the knob values. Generators come from maintained libraries:
itertools.product (full factorials), pyDOE3 (2-level fractional factorials by generators,
generalized subset designs for balanced multi-level fractions) and scipy.stats.qmc (Latin
hypercube). pyDOE3 and scipy are imported where a design needs them: they cost ~1 s of import
at every Snakefile parse, and a plain grid needs neither.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

import numpy as np


class DesignError(ValueError):
    """A design that cannot be built as requested; ``allowed`` says what would work."""

    def __init__(self, message: str, allowed: list[int] | None = None):
        super().__init__(message)
        self.allowed = allowed


Rows = list[tuple[int, ...]]


def grid(levels: Sequence[int]) -> Rows:
    """Full factorial: every combination of levels, in lexicographic order."""
    return list(itertools.product(*(range(int(n)) for n in levels)))


def fractional_2level(levels: Sequence[int], generators: str) -> Rows:
    """Standard 2-level fraction by generators (e.g. 'a b ab' for 3 factors in 4 runs)."""
    if any(n != 2 for n in levels):
        raise DesignError(f"generators need 2-level knobs; got levels {list(levels)}")
    words = generators.split()
    if len(words) != len(levels):
        raise DesignError(
            f"generator string '{generators}' has {len(words)} words for {len(levels)} knobs"
        )
    import pyDOE3

    matrix = pyDOE3.fracfact(generators)
    return sorted(tuple(int(v > 0) for v in r) for r in matrix)


def balanced_sizes(levels: Sequence[int]) -> list[int]:
    """Run counts for which `balanced_fraction` exists (strict fractions of the full grid)."""
    full = int(np.prod(levels))
    return sorted({n for n in range(1, full) if _balanced_fraction(levels, n) is not None})


def balanced_fraction(levels: Sequence[int], runs: int) -> Rows:
    """A fraction of the full grid of ``runs`` runs in which every level of every knob occurs
    equally often and the main effects are estimable (not aliased with each other).

    Built as a union of the generalized subset designs of pyDOE3.gsd (for 3x3 with reduction 3:
    the three Latin-square classes (i + j) mod 3; two of them give the balanced 6-run fraction).
    """
    rows = _balanced_fraction(levels, runs)
    if rows is None:
        raise DesignError(
            f"a balanced fraction of {runs} runs does not exist for levels {list(levels)}",
            balanced_sizes(levels),
        )
    return rows


def _balanced_fraction(levels: Sequence[int], runs: int) -> Rows | None:
    levels = list(levels)
    full = int(np.prod(levels))
    if runs == full:
        return grid(levels)
    if runs > full or runs < 1:
        return None
    import pyDOE3

    for reduction in range(2, full + 1):
        try:
            parts = pyDOE3.gsd(levels, reduction, n=reduction)
        except (ValueError, AssertionError):
            continue
        parts = [p for p in parts if len(p)]
        for m in range(1, len(parts)):
            for combo in itertools.combinations(range(len(parts)), m):
                rows = sorted({tuple(int(v) for v in r) for i in combo for r in parts[i]})
                if len(rows) == runs and is_balanced(rows, levels) and main_effects_estimable(
                    rows, levels
                ):
                    return rows
    return None


def latin_hypercube(levels: Sequence[int], runs: int, seed: int = 0) -> Rows:
    """Latin hypercube over discrete levels (scipy.stats.qmc.LatinHypercube).

    Each knob's unit interval is cut into ``runs`` strata with one sample per stratum; stratum s
    maps to level floor(s * L / runs), so every level appears runs / L times: ``runs`` must be a
    multiple of every knob's level count.
    """
    bad = [n for n in levels if runs % n]
    if bad:
        raise DesignError(
            f"Latin hypercube of {runs} runs cannot stratify knobs with {bad} levels evenly",
            [int(np.lcm.reduce(list(levels))) * k for k in (1, 2, 3)],
        )
    from scipy.stats import qmc

    sample = qmc.LatinHypercube(d=len(levels), seed=seed).random(runs)  # (runs, d) in [0, 1)
    strata = np.floor(sample * runs).astype(int)  # one sample per stratum and knob
    rows = [
        tuple(int(strata[r, j] * levels[j] // runs) for j in range(len(levels))) for r in range(runs)
    ]
    return rows


def one_at_a_time(levels: Sequence[int], base: Sequence[int]) -> Rows:
    """Vary one knob at a time around ``base`` (level indices); the base run itself first."""
    rows = [tuple(base)]
    for j, n in enumerate(levels):
        for lv in range(n):
            if lv != base[j]:
                row = list(base)
                row[j] = lv
                rows.append(tuple(row))
    return rows


def is_balanced(rows: Rows, levels: Sequence[int]) -> bool:
    """Every level of every knob occurs equally often."""
    for j, n in enumerate(levels):
        counts = Counter(r[j] for r in rows)
        if len(counts) != n or len(set(counts.values())) != 1:
            return False
    return True


def main_effects_estimable(rows: Rows, levels: Sequence[int]) -> bool:
    """The main-effects model (intercept + treatment dummies per knob) has full column rank,
    i.e. no main effect is aliased with another."""
    cols = [np.ones(len(rows))]
    for j, n in enumerate(levels):
        for lv in range(1, n):
            cols.append(np.array([1.0 if r[j] == lv else 0.0 for r in rows]))
    x = np.stack(cols, axis=1)
    return int(np.linalg.matrix_rank(x)) == x.shape[1]
