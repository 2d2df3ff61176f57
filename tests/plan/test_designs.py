"""Designs have the properties they claim."""

from collections import Counter

import pytest

from physweep.plan import designs as D


def test_grid_is_full_factorial():
    rows = D.grid([3, 3])
    assert len(rows) == 9 and len(set(rows)) == 9
    assert D.is_balanced(rows, [3, 3]) and D.main_effects_estimable(rows, [3, 3])


def test_balanced_fraction_3x3_in_6_runs():
    rows = D.balanced_fraction([3, 3], 6)
    assert len(rows) == 6 and len(set(rows)) == 6
    assert set(rows) <= set(D.grid([3, 3]))
    # every level of every knob appears equally often (twice)
    for j in range(2):
        assert set(Counter(r[j] for r in rows).values()) == {2}
    # main effects are not aliased with each other
    assert D.main_effects_estimable(rows, [3, 3])


def test_unbalanceable_fraction_is_refused_with_allowed_sizes():
    with pytest.raises(D.DesignError) as exc:
        D.balanced_fraction([3, 3], 7)
    assert exc.value.allowed == [6]


def test_two_level_fraction_by_generators_is_orthogonal():
    rows = D.fractional_2level([2, 2, 2], "a b ab")
    assert len(rows) == 4 and D.is_balanced(rows, [2, 2, 2])
    assert D.main_effects_estimable(rows, [2, 2, 2])
    # resolution III: c is aliased with the a*b interaction (c = ab)
    assert all((r[0] ^ r[1]) == 1 - r[2] or (r[0] ^ r[1]) == r[2] for r in rows)


def test_generators_need_two_levels():
    with pytest.raises(D.DesignError):
        D.fractional_2level([3, 2], "a b")


@pytest.mark.parametrize("runs", [3, 6, 9])
def test_latin_hypercube_one_per_stratum(runs):
    rows = D.latin_hypercube([3, 3], runs, seed=1)
    assert len(rows) == runs
    for j in range(2):
        # each level used runs/3 times: one sample per stratum, strata evenly spread on levels
        assert set(Counter(r[j] for r in rows).values()) == {runs // 3}


def test_latin_hypercube_seed_changes_design_but_not_balance():
    a, b = D.latin_hypercube([3, 3], 3, seed=0), D.latin_hypercube([3, 3], 3, seed=5)
    assert D.latin_hypercube([3, 3], 3, seed=0) == a
    assert sorted(r[0] for r in a) == sorted(r[0] for r in b) == [0, 1, 2]


def test_latin_hypercube_refuses_uneven_strata():
    with pytest.raises(D.DesignError):
        D.latin_hypercube([3, 2], 4)


def test_one_at_a_time_varies_single_knob():
    rows = D.one_at_a_time([3, 2], base=[1, 0])
    assert rows[0] == (1, 0)
    assert all(sum(a != b for a, b in zip(r, rows[0], strict=True)) == 1 for r in rows[1:])
    assert len(rows) == 1 + 2 + 1
