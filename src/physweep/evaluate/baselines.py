"""What every evaluation compares a model with, on the same samples (docs/architecture.md,
"Evaluation"): the evaluation samples themselves (trajectories and start snapshots), the two
model-free forecasts (persistence, linear extrapolation) and the reference model's per-sample
errors read back from its own eval file.

Samples. A suite evaluates ``n_traj`` trajectories per split, picked round-robin over the
split's regimes (the first trajectory of every regime, then the second of every regime, ...; the
test split is stored sorted by regime, so "the first n" would leave regimes out), and
``starts`` start snapshots per trajectory, stratified over ``[1, n_time - 1 - horizon]``: the
range is cut into ``starts`` equal strata and one start is drawn uniformly in each, from a
generator seeded by (suite seed, split name, trajectory index). The starts are therefore the same
for every run and checkpoint evaluated with the same suite on the same data, do not depend on
which other trajectories are evaluated, and start >= 1 leaves a previous snapshot for linear
extrapolation. When the range holds fewer snapshots than ``starts``, every one of them is used.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "Sample",
    "eval_samples",
    "linear_extrapolation",
    "persistence",
    "reference_nrmse",
    "regime_round_robin",
    "start_snapshots",
]


@dataclass(frozen=True)
class Sample:
    """One rollout of an evaluation: trajectory ``traj_index`` of ``split`` from ``start``."""

    split: str
    traj_index: int
    start: int
    regime: str


def regime_round_robin(regime: torch.Tensor | np.ndarray, n: int | None) -> list[int]:
    """``n`` trajectory indices (None: all) covering the regimes in turn, returned ascending.

    Order of picking: the first trajectory (lowest index) of every regime, in regime order,
    then the second of every regime, and so on, so any ``n >= number of regimes`` includes every
    regime and the regimes' counts differ by at most one."""
    reg = np.asarray(regime, dtype=np.int64).reshape(-1)
    if n is None or n >= reg.size:
        return list(range(reg.size))
    groups = [list(np.flatnonzero(reg == r)) for r in np.unique(reg)]
    order: list[int] = []
    for k in range(max(len(g) for g in groups)):
        order += [int(g[k]) for g in groups if k < len(g)]
    return sorted(order[:n])


def start_snapshots(n_time: int, horizon: int, starts: int, seed: int, split: str,
                    traj_index: int) -> list[int]:
    """Stratified, seeded start snapshots of one trajectory (ascending; see the module doc)."""
    lo, hi = 1, n_time - 1 - horizon
    if hi < lo:
        raise ValueError(f"a rollout of {horizon} steps from snapshot >= 1 needs more than "
                         f"{n_time} snapshots")
    k = hi - lo + 1
    if starts >= k:
        return list(range(lo, hi + 1))
    rng = np.random.default_rng([int(seed), zlib.crc32(split.encode()), int(traj_index)])
    edges = lo + (np.arange(starts + 1) * k) // starts  # strata [edges[j], edges[j+1])
    return [int(rng.integers(a, b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def eval_samples(split_name: str, split, n_traj: int | None, starts: int, horizon: int,
                 seed: int) -> list[Sample]:
    """The samples of one split: trajectories by :func:`regime_round_robin`, each with its
    :func:`start_snapshots`; ordered by trajectory, then start."""
    out = []
    for i in regime_round_robin(split.regime, n_traj):
        label = split.regime_names[int(split.regime[i])]
        for s in start_snapshots(split.n_time, horizon, starts, seed, split_name, i):
            out.append(Sample(split_name, i, s, str(label)))
    return out


def persistence(fields: torch.Tensor, start: int, horizon: int) -> torch.Tensor:
    """The start state repeated: ``(T, C, H, W)`` trajectory -> ``(horizon, C, H, W)``."""
    return fields[start].expand(horizon, *fields.shape[1:])


def linear_extrapolation(fields: torch.Tensor, start: int, horizon: int) -> torch.Tensor:
    """``x_t0 + s (x_t0 - x_{t0-1})`` at leads ``s = 1 … horizon`` (nothing clipped; iterated
    extrapolation of oscillating flow grows without bound, which is what it scores)."""
    if start < 1:
        raise ValueError("linear extrapolation needs the snapshot before the start (start >= 1)")
    x0, dx = fields[start], fields[start] - fields[start - 1]
    lead = torch.arange(1, horizon + 1, dtype=fields.dtype).view(-1, *([1] * x0.ndim))
    return x0 + lead * dx


def reference_nrmse(path: str | Path, samples: list[Sample], lead: np.ndarray) -> np.ndarray:
    """The reference model's per-sample, per-lead nRMSE ``(len(samples), len(lead))`` read from
    its eval file, in the order of ``samples``.

    The reference must have been evaluated with the same suite on the same data: exactly the same
    samples (split, traj_index, start) and lead times; anything else raises ValueError saying
    what differs."""
    import xarray as xr

    path = Path(path)
    with xr.open_dataset(path) as ds:
        need = ("nrmse", "split", "traj_index", "start", "lead")
        missing = [v for v in need if v not in ds.variables]
        if missing or "sample" not in ds["nrmse"].dims:
            raise ValueError(f"reference eval {path} is not a per-sample eval file (missing "
                             f"{missing or ['sample dim']}); re-evaluate the reference model "
                             "with this version")
        keys = list(zip((str(s) for s in ds["split"].values),
                        (int(t) for t in ds["traj_index"].values),
                        (int(s) for s in ds["start"].values), strict=True))
        ref_lead = np.asarray(ds["lead"].values)
        values = np.asarray(ds["nrmse"].transpose("sample", "lead").values, dtype=np.float64)
        suite = ds.attrs.get("suite", "?")
    ours = [(s.split, s.traj_index, s.start) for s in samples]
    if not np.array_equal(ref_lead, np.asarray(lead)):
        raise ValueError(f"reference eval {path} (suite {suite}) has leads "
                         f"{ref_lead.min()}…{ref_lead.max()}, this evaluation "
                         f"{int(lead.min())}…{int(lead.max())}: evaluate the reference with the "
                         "same suite")
    if sorted(keys) != sorted(ours):
        only_ref = sorted(set(keys) - set(ours))[:5]
        only_here = sorted(set(ours) - set(keys))[:5]
        raise ValueError(f"reference eval {path} (suite {suite}) has other samples than this "
                         f"evaluation ({len(keys)} vs {len(ours)}; (split, traj_index, start) "
                         f"only in the reference: {only_ref}, only here: {only_here}): evaluate "
                         "the reference with the same suite on the same data")
    pos = {k: j for j, k in enumerate(keys)}
    return values[[pos[k] for k in ours]]
