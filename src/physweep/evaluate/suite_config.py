"""Evaluation suite settings (torch-free, so config validation at parse time stays cheap).

How a suite is evaluated: :mod:`physweep.evaluate.suite`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalSuite:
    name: str
    splits: tuple[str, ...] | list[str] = ("test", "ood")  # a missing file is skipped
    n_traj: int | None = None  # trajectories per split, round-robin over regimes (None: all)
    horizon: int = 8  # rollout steps (clipped to the shortest split's snapshots - 2)
    starts: int = 1  # start snapshots per trajectory (seeded, stratified; evaluate.baselines)
    long_horizon_from: int = 4  # leads >= this count as "long"
    ensemble_members: int | None = None  # None: the checkpoint's corrector.ensemble_members
    points: int | None = None  # encoder input points per trajectory (None: all fluid cells)
    thresholds: dict[str, float] | None = None  # gate thresholds (None: physics defaults)
    seed: int = 0  # start snapshots, corrector noise and point sampling

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.long_horizon_from < 1:
            raise ValueError("horizon and long_horizon_from must be >= 1")
        if self.starts < 1:
            raise ValueError("starts must be >= 1")
        if self.n_traj is not None and self.n_traj < 1:
            raise ValueError("n_traj must be >= 1 or None")
        if self.ensemble_members is not None and self.ensemble_members < 1:
            raise ValueError("ensemble_members must be >= 1 or None")
