"""Experimental designs over discrete knob levels.

Every design returns a list of *level-index* rows (one tuple per run, one index per knob), so the
properties each design claims (balance, one-per-stratum, estimable main effects) can be checked
on indices independent of the knob values. Generators come from maintained libraries:
itertools.product (full factorials), pyDOE3 (2-level fractional factorials: generators by
``fracfact_opt``, the matrix by ``fracfact``; generalized subset designs and Taguchi orthogonal
arrays for balanced multi-level fractions) and scipy.stats.qmc (Latin hypercube). pyDOE3 and
scipy are imported where a design needs them: they cost ~1 s of import at every Snakefile parse,
and a plain grid needs neither.

Fractions say what they confound (:func:`alias_structure`): the resolution and which main
effects are aliased with which two-factor interactions.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


class DesignError(ValueError):
    """A design that cannot be built as requested; ``allowed`` says what would work."""

    def __init__(self, message: str, allowed: list[int] | None = None):
        super().__init__(message)
        self.allowed = allowed


Rows = list[tuple[int, ...]]

# Bounds of the searches behind `runs: N` fractions, so a request that has no answer is refused
# in about a second instead of searching for minutes. The step cap makes the outcome the same on
# every machine; the wall-clock cap only guards against a very slow one.
SEARCH_SECONDS = 2.0  # mixed levels: wall-clock cap of the generalized-subset-design search
SEARCH_STEPS = 200_000  # mixed levels: candidate unions of subset designs looked at
OPT_SECONDS = 0.5  # two levels: pyDOE3.fracfact_opt's exhaustive search when it fits in this


def grid(levels: Sequence[int]) -> Rows:
    """Full factorial: every combination of levels, in lexicographic order."""
    return list(itertools.product(*(range(int(n)) for n in levels)))


def size(levels: Sequence[int]) -> int:
    return math.prod(int(n) for n in levels)


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


# ---- regular 2^(k-p) fractions (every knob at two levels)


def regular_sizes(k: int) -> list[int]:
    """Run counts of the regular 2^(k-p) fractions of k two-level knobs that estimate every
    main effect (2^m runs, k + 1 <= 2^m < 2^k)."""
    return [2**m for m in range(1, k) if 2**m >= k + 1]


def regular_generators(k: int, runs: int) -> str:
    """Generator string (pyDOE3 notation, 'a b c abc bc': knob i is column i) of a 2^(k-p)
    fraction in ``runs`` runs with the highest resolution found.

    Where pyDOE3.fracfact_opt's exhaustive search fits in about ``OPT_SECONDS`` it decides: it
    ranks every set of generators by its aliasing (main effects with each other, then with
    two-factor interactions, then two-factor interactions with each other, ...), i.e. highest
    resolution and least aberration first. Beyond that (or for the near-saturated designs it
    refuses) a bounded search of our own: greedy generator choices from several starting
    columns, scored by the word-length pattern (A3, A4, A5) -- the resolution first."""
    if runs not in regular_sizes(k):
        raise DesignError(
            f"no regular two-level fraction of {runs} runs estimates the main effects of {k} "
            f"two-level knobs (fractions have 2^m runs, at least {k + 1} and fewer than {2**k})",
            regular_sizes(k),
        )
    m = runs.bit_length() - 1
    p = k - m
    if 2**k * math.comb(2**m - 1 - m, p) * 10e-6 <= OPT_SECONDS:  # ~10 us a word per candidate
        import pyDOE3

        try:
            return pyDOE3.fracfact_opt(k, p)[0]
        except ValueError:  # "too many erased factors to create aliasing": near-saturated
            pass
    cols = _greedy_columns(k, m)
    return " ".join("".join(chr(97 + i) for i in range(m) if c >> i & 1) for c in cols)


GREEDY_STEPS = 300_000  # two levels beyond fracfact_opt: XORs evaluated (~1 us each)


def _xor(cols: Sequence[int]) -> int:
    v = 0
    for c in cols:
        v ^= c
    return v


def _greedy_columns(k: int, m: int) -> list[int]:
    """Columns (bit masks over the m base factors) of a 2^(k-p) fraction: from each starting
    generator, add the column that creates the fewest words of length 3, then 4, then 5; keep
    the design with the smallest (A3, A4, A5). Starts alternate between every interaction
    column and, when k <= 2^(m-1), the odd-weight ones (no word of length 3 among them:
    resolution IV at least); highest-order columns first; at most ``GREEDY_STEPS`` XORs."""
    base = [1 << i for i in range(m)]
    every = [sum(1 << i for i in c) for r in range(m, 1, -1) for c in itertools.combinations(range(m), r)]
    pools = [every] + ([[c for c in every if c.bit_count() % 2]] if k <= 2 ** (m - 1) else [])
    starts = [(pool, first) for firsts in itertools.zip_longest(*pools) for pool, first in
              zip(pools, firsts, strict=True) if first is not None]
    best: tuple[tuple[int, ...], list[int]] | None = None
    steps = 0
    for pool, first in starts:
        cols = [*base, first]
        while len(cols) < k:
            n = len(cols)
            steps += math.comb(n, 2) + math.comb(n, 3) + math.comb(n, 4) + len(pool)
            x2 = Counter(a ^ b for a, b in itertools.combinations(cols, 2))
            x3 = Counter(_xor(t) for t in itertools.combinations(cols, 3))
            x4 = Counter(_xor(t) for t in itertools.combinations(cols, 4))
            cols.append(min((c for c in pool if c not in cols), key=lambda c: (x2[c], x3[c], x4[c])))
        steps += math.comb(k, 3) + math.comb(k, 4) + math.comb(k, 5)
        score = tuple(sum(1 for t in itertools.combinations(cols, r) if not _xor(t))
                      for r in (3, 4, 5))
        if best is None or score < best[0]:
            best = (score, cols)
        if steps > GREEDY_STEPS or best[0] == (0, 0, 0):
            break
    assert best is not None
    return best[1]


def defining_relation(generators: str) -> list[tuple[int, ...]]:
    """Words of the defining relation of a 2-level fraction given by generators, as sorted tuples
    of knob (column) indices, shortest first. 'a b ab' -> [(0, 1, 2)] (I = ABC)."""
    tokens = [t.lstrip("+-").lower() for t in generators.split()]
    main = [i for i, t in enumerate(tokens) if len(t) == 1]
    column = {chr(97 + j): c for j, c in enumerate(main)}  # base letter -> its column
    basic = []
    for i, t in enumerate(tokens):
        if len(t) > 1:
            mask = 1 << i
            for ch in t:
                mask ^= 1 << column[ch]
            basic.append(mask)
    words = set()
    for r in range(1, len(basic) + 1):
        for combo in itertools.combinations(basic, r):
            w = 0
            for b in combo:
                w ^= b
            words.add(w)
    out = [tuple(i for i in range(len(tokens)) if w >> i & 1) for w in words if w]
    return sorted(out, key=lambda w: (len(w), w))


# ---- balanced fractions with mixed levels


@dataclass
class _Search:
    found: dict[int, Rows] = field(default_factory=dict)
    complete: bool = True  # False: a search cap was reached before every candidate was seen


class _Budget:
    """``SEARCH_STEPS`` steps and ``SEARCH_SECONDS`` of wall clock, shared by the searches of
    one request (the search for the requested size and the sweep for the sizes that exist)."""

    def __init__(self) -> None:
        self.steps = SEARCH_STEPS
        self.deadline = time.monotonic() + SEARCH_SECONDS
        self._calls = 0

    def spend(self, steps: int) -> bool:
        """Spend ``steps``; False when the budget is exhausted."""
        self.steps -= steps
        self._calls += 1
        if self.steps < 0:
            return False
        return self._calls % 64 or time.monotonic() < self.deadline


def balanced_sizes(levels: Sequence[int]) -> list[int]:
    """Run counts for which `balanced_fraction` exists (strict fractions of the full grid); for
    mixed levels the ones a bounded search finds."""
    levels = [int(n) for n in levels]
    if levels and all(n == 2 for n in levels):
        return regular_sizes(len(levels))
    return sorted(_search(levels, _Budget()).found)


def balanced_fraction(levels: Sequence[int], runs: int) -> Rows:
    """A fraction of the full grid of ``runs`` runs in which every level of every knob occurs
    equally often and the main effects are estimable (not aliased with each other).

    Every knob at two levels: the regular 2^(k-p) fraction of highest resolution
    (:func:`regular_generators`). Mixed levels: the first union of generalized subset designs
    (pyDOE3.gsd; for 3x3 with reduction 3 the three Latin-square classes (i + j) mod 3, two of
    which give the balanced 6-run fraction) or projected Taguchi orthogonal array that is
    balanced and estimates the main effects -- a bounded search (``SEARCH_STEPS``,
    ``SEARCH_SECONDS``); when it fails the error lists the run counts that do exist.
    """
    levels = [int(n) for n in levels]
    if runs == size(levels):
        return grid(levels)
    if levels and all(n == 2 for n in levels):
        return fractional_2level(levels, regular_generators(len(levels), runs))
    budget = _Budget()
    result = _search(levels, budget, want=runs)
    if runs in result.found:
        return result.found[runs]
    sweep = _search(levels, budget)
    lcm = int(np.lcm.reduce(levels)) if levels else 1
    why = _impossible(levels, runs)
    msg = f"a balanced fraction of {runs} runs does not exist for levels {levels}"
    if why:
        msg += f" ({why})"
    elif not (result.complete and sweep.complete):
        msg = (f"no balanced fraction of {runs} runs for levels {levels} was found within the "
               f"search bounds ({SEARCH_STEPS} candidates or {SEARCH_SECONDS:g} s)")
    msg += f"; a balanced fraction needs a multiple of {lcm} runs, at least " \
        f"{1 + sum(n - 1 for n in levels)}"
    raise DesignError(msg, sorted(sweep.found))


def _impossible(levels: list[int], runs: int) -> str | None:
    lcm = int(np.lcm.reduce(levels)) if levels else 1
    if runs % lcm:
        return f"{runs} is not a multiple of every knob's number of levels"
    if runs < 1 + sum(n - 1 for n in levels):
        return "too few runs to estimate every main effect"
    if runs > size(levels):
        return f"more runs than the full grid's {size(levels)}"
    return None


def _search(levels: list[int], budget: _Budget, want: int | None = None) -> _Search:
    """Balanced, main-effect-estimable fractions: unions of pyDOE3.gsd subset designs (reduction
    2, 3, ... in order; the first union found per run count), then projections of pyDOE3's
    Taguchi orthogonal arrays for run counts not found. ``want``: look for that count only."""
    out = _Search()
    full = size(levels)

    def useful(n: int) -> bool:
        return n < full and n not in out.found and (want is None or n == want) \
            and _impossible(levels, n) is None

    if want is not None and not useful(want):
        return out
    import pyDOE3

    for reduction in range(2, full + 1):
        # a gsd call builds a reduction^k-row array: ~0.8 us a row, a candidate union ~5 us
        if not budget.spend(max(50, reduction ** len(levels) // 6)) or \
                time.monotonic() > budget.deadline:
            out.complete = False
            break
        try:
            parts = pyDOE3.gsd(levels, reduction, n=reduction)
        except (ValueError, AssertionError):
            break  # "reduction too large": every larger reduction fails too (and slowly)
        parts = [p for p in parts if len(p)]
        sizes = [len(p) for p in parts]
        asc = sorted(sizes)
        for m in range(1, len(parts)):
            if want is not None and not sum(asc[:m]) <= want <= sum(asc[-m:]):
                continue
            for combo in itertools.combinations(range(len(parts)), m):
                n = sum(sizes[i] for i in combo)
                # checking a candidate costs about 20 skipped ones
                if not budget.spend(21 if useful(n) else 1):
                    out.complete = False
                    break
                if not useful(n):
                    continue
                rows = sorted({tuple(int(v) for v in r) for i in combo for r in parts[i]})
                if len(rows) == n and is_balanced(rows, levels) and main_effects_estimable(
                    rows, levels
                ):
                    out.found[n] = rows
                    if want is not None:
                        return out
            if not out.complete:
                break
        if not out.complete:
            break
    for n, rows in _orthogonal_arrays(levels).items():
        if useful(n):
            out.found[n] = rows
    return out


def _orthogonal_arrays(levels: list[int]) -> dict[int, Rows]:
    """Strength-2 orthogonal arrays of pyDOE3 (L9(3^4), L18(6^1 3^6), ...) projected on columns
    with each knob's number of levels, where the projection has no repeated run."""
    import pyDOE3

    out: dict[int, Rows] = {}
    for name in pyDOE3.list_orthogonal_arrays():
        oa = np.asarray(pyDOE3.get_orthogonal_array(name))
        oa = oa - oa.min(axis=0)
        col_levels = [int(c.max()) + 1 for c in oa.T]
        free = list(range(oa.shape[1]))
        cols = []
        for n in levels:
            pick = next((c for c in free if col_levels[c] == n), None)
            if pick is None:
                break
            cols.append(pick)
            free.remove(pick)
        if len(cols) != len(levels) or oa.shape[0] in out:
            continue
        rows = [tuple(int(v) for v in r) for r in oa[:, cols]]
        if len(set(rows)) == len(rows) and is_balanced(rows, levels) and \
                main_effects_estimable(rows, levels):
            out[len(rows)] = sorted(rows)
    return out


# ---- other designs


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


# ---- what a fraction confounds


ROMAN = {2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII", 9: "IX", 10: "X"}


@dataclass
class AliasStructure:
    """What a fraction cannot tell apart (knobs by column index).

    ``resolution``: regular two-level fractions: the length of the shortest word of the defining
    relation (``III``: main effects aliased with two-factor interactions, ``IV``: main effects
    clear of them but two-factor interactions aliased with each other, ``V`` and up: both clear);
    other fractions: ``III`` when a main effect is (partly) aliased with a two-factor interaction,
    else ``IV+``. ``main_2fi``: (main, (a, b), fully) -- the main effect's estimate is biased by
    the a x b interaction (fully: the two columns are identical up to sign). ``fi_fi``: pairs of
    two-factor interactions that are the same contrast (regular fractions). ``words``: the
    words of the defining relation of length 4 at most (regular fractions)."""

    resolution: str
    regular: bool
    main_2fi: list[tuple[int, tuple[int, int], bool]]
    fi_fi: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    words: list[tuple[int, ...]] = field(default_factory=list)


def _contrasts(n: int) -> np.ndarray:
    """(n, n-1) orthogonal contrasts of an n-level factor, columns summing to 0 with squared
    norm n (two levels: -1/+1)."""
    q, _ = np.linalg.qr(np.vander(np.arange(n, dtype=float), n, increasing=True))
    return q[:, 1:] * math.sqrt(n)


def alias_structure(rows: Rows, levels: Sequence[int], generators: str | None = None
                    ) -> AliasStructure:
    """Resolution and aliases of a fraction whose main effects are estimable.

    Main effect i is aliased with the a x b interaction when the alias matrix
    (X1'X1)^-1 X1'X2 -- X1 the intercept and main-effect contrasts, X2 the a x b contrasts,
    orthogonal to X1 over the full grid -- has a non-zero block for i and (a, b)."""
    levels = [int(n) for n in levels]
    k = len(levels)
    codes = np.asarray(rows, dtype=int).reshape(len(rows), k)
    con = [_contrasts(n)[codes[:, j]] for j, n in enumerate(levels)]
    x1 = np.column_stack([np.ones(len(rows)), *con])
    starts = np.cumsum([1] + [n - 1 for n in levels])
    main_2fi = []
    pairs = list(itertools.combinations(range(k), 2))
    for a, b in pairs:
        x2 = np.column_stack([con[a][:, i] * con[b][:, j] for i in range(levels[a] - 1)
                              for j in range(levels[b] - 1)])
        coef = np.linalg.lstsq(x1, x2, rcond=None)[0]
        for i in range(k):
            block = coef[starts[i]:starts[i] + levels[i] - 1]
            if np.abs(block).max() > 1e-8:
                fully = levels[i] == levels[a] == levels[b] == 2 and bool(
                    np.isclose(abs(block[0, 0]), 1.0))
                main_2fi.append((i, (a, b), fully))
    main_2fi.sort(key=lambda t: (t[0], t[1]))
    if generators is not None and all(n == 2 for n in levels):
        words = defining_relation(generators)
        res = min((len(w) for w in words), default=k + 1)
        fi_fi = [pair for a, b, c, d in (w for w in words if len(w) == 4)
                 for pair in (((a, b), (c, d)), ((a, c), (b, d)), ((a, d), (b, c)))]
        return AliasStructure(ROMAN.get(res, str(res)) if words else "full", True, main_2fi,
                              sorted(fi_fi), [w for w in words if len(w) <= 4])
    return AliasStructure("III" if main_2fi else "IV+", False, main_2fi)
