"""Accuracy, stability and uncertainty metrics (torch tensors in, torch tensors out).

Conventions shared by every function here:

* Fields are laid out ``(..., C, H, W)``: any leading batch dims (trajectory, lead time, ...),
  then channels, then the spatial grid.
* ``mask`` (optional) is a bool tensor broadcastable to ``(..., C, H, W)`` -- usually ``(H, W)``
  or ``(B, 1, H, W)`` -- with ``True`` = fluid cell. Only fluid cells enter spatial reductions;
  values in solid cells are ignored completely (even NaN there does not leak into the result).
* Non-finite inputs never raise: NaN/inf in the (fluid part of the) prediction gives a NaN or
  inf result, so a diverged rollout is visibly "failed", never silently "good". The only
  metrics with a documented *finite* failed value are :func:`correlation_time` (a NaN
  correlation counts as a drop below the threshold) -- see each docstring.

References: nRMSE from PDEBench (Takamoto et al., NeurIPS 2022), VRMSE from The Well (Ohana et al.,
NeurIPS 2024),
regression calibration from Kuleshov et al. (ICML 2018), CRPS and spread-skill as in
WeatherBench 2, correlation time as in PDE-Refiner (threshold 0.8).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "NRMSE_EPS",
    "VRMSE_EPS",
    "calibration_curve",
    "correlation_time",
    "crps_ensemble",
    "crps_gaussian",
    "empirical_quantiles",
    "nrmse",
    "nrmse_channels",
    "pearson",
    "quantile_ece",
    "quantile_levels",
    "skill",
    "spread_skill_ratio",
    "vrmse",
]

#: Floor on ``||y||_2`` in :func:`nrmse`: a truth field that is identically zero gives
#: ``||ŷ||/1e-12`` (huge) for a wrong prediction and exactly 0 for a perfect one, never a
#: division by zero.
NRMSE_EPS = 1e-12
#: Added to the spatial variance of the truth in :func:`vrmse` (The Well's value).
VRMSE_EPS = 1e-7


def _as_tensor(x, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.float64
    device = like.device if like is not None else None
    return torch.as_tensor(x, dtype=dtype, device=device)


def _float(x: Tensor) -> Tensor:
    return x if x.is_floating_point() else x.to(torch.float64)


def _prep(pred, truth, mask):
    pred = _float(_as_tensor(pred))
    truth = _float(_as_tensor(truth, pred))
    if pred.ndim < 3:
        raise ValueError(f"fields must be (..., C, H, W); got shape {tuple(pred.shape)}")
    pred, truth = torch.broadcast_tensors(pred, truth)
    if mask is None:
        weight = None
    else:
        mask = _as_tensor(mask).to(device=pred.device).bool()
        weight = torch.broadcast_to(mask, pred.shape)
    return pred, truth, weight


def _masked(x: Tensor, weight: Tensor | None) -> Tensor:
    """Zero the solid cells (with ``where`` so that NaN there is dropped, not propagated)."""
    if weight is None:
        return x
    return torch.where(weight, x, torch.zeros((), dtype=x.dtype, device=x.device))


def _space_sum(x: Tensor) -> Tensor:
    return x.sum(dim=(-2, -1))


def _space_count(x: Tensor, weight: Tensor | None) -> Tensor:
    if weight is None:
        return torch.full(x.shape[:-2], x.shape[-2] * x.shape[-1], dtype=x.dtype, device=x.device)
    return weight.to(x.dtype).sum(dim=(-2, -1))


def nrmse_channels(pred, truth, mask=None) -> Tensor:
    """PDEBench normalised RMSE of every channel: ``(..., C, H, W) -> (..., C)``.

    For every sample, channel (and time, if time is a leading dim) the ratio
    ``||ŷ - y||_2 / max(||y||_2, NRMSE_EPS)`` over the (fluid) spatial cells.
    """
    pred, truth, w = _prep(pred, truth, mask)
    err = _space_sum(_masked((pred - truth) ** 2, w)).sqrt()
    ref = _space_sum(_masked(truth**2, w)).sqrt()
    return err / ref.clamp_min(NRMSE_EPS)


def nrmse(pred, truth, mask=None) -> Tensor:
    """PDEBench normalised RMSE: :func:`nrmse_channels`, then the mean over channels.

    Shapes: ``(..., C, H, W) -> (...)``. A perfect prediction scores 0, predicting zeros
    scores 1.
    """
    return nrmse_channels(pred, truth, mask).mean(dim=-1)


def skill(error, reference_error):
    """Skill score ``1 - error / reference_error`` (elementwise; floats or arrays).

    1 = perfect, 0 = as good as the reference forecast (e.g. persistence), < 0 = worse. NaN where
    the reference error is not finite and positive (a reference that is already exact, or
    missing, leaves nothing to measure skill against); a NaN/inf error gives NaN/-inf.
    """
    err = np.asarray(error, dtype=np.float64)
    ref = np.asarray(reference_error, dtype=np.float64)
    ok = np.isfinite(ref) & (ref > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ok, 1.0 - err / np.where(ok, ref, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def vrmse(pred, truth, mask=None) -> Tensor:
    """The Well's variance-scaled RMSE.

    Per channel ``sqrt(mean_space (ŷ - y)^2 / (Var_space(y) + 1e-7))`` (population variance
    over the fluid cells), then the mean over channels: ``(..., C, H, W) -> (...)``.
    Predicting the spatial mean of the truth scores 1.
    """
    pred, truth, w = _prep(pred, truth, mask)
    n = _space_count(pred, w)
    mse = _space_sum(_masked((pred - truth) ** 2, w)) / n
    mean_y = _space_sum(_masked(truth, w)) / n
    var_y = _space_sum(_masked((truth - mean_y[..., None, None]) ** 2, w)) / n
    return (mse / (var_y + VRMSE_EPS)).sqrt().mean(dim=-1)


def pearson(pred, truth, mask=None) -> Tensor:
    """Pearson correlation between prediction and truth: ``(..., C, H, W) -> (...)``.

    Channels and (fluid) space are flattened together into one sample of ``C*H*W`` values, as in
    PDE-Refiner's correlation time (per-channel normalisation is *not* applied, so a channel with
    a larger magnitude weighs more; normalise the fields beforehand if that matters).
    A constant prediction or constant truth (zero variance, correlation undefined) scores 0
    (carries no correlated structure); NaN/inf in the inputs give NaN.
    """
    pred, truth, w = _prep(pred, truth, mask)
    dims = (-3, -2, -1)
    n = pred[..., :1, :1, :1].new_full(pred.shape[:-3], pred.shape[-3:].numel())
    if w is not None:
        n = w.to(pred.dtype).sum(dim=dims)
    mp = _masked(pred, w).sum(dim=dims) / n
    mt = _masked(truth, w).sum(dim=dims) / n
    dp = pred - mp[..., None, None, None]
    dt = truth - mt[..., None, None, None]
    cov = _masked(dp * dt, w).sum(dim=dims)
    den = (_masked(dp * dp, w).sum(dim=dims) * _masked(dt * dt, w).sum(dim=dims)).sqrt()
    zero = torch.zeros((), dtype=cov.dtype, device=cov.device)
    corr = torch.where(den == 0, zero, cov / den)
    return corr.clamp(-1.0, 1.0)


def correlation_time(corr, threshold: float = 0.8) -> Tensor:
    """Number of leading lead-time steps with ``corr > threshold``: ``(..., T) -> (...)`` int64.

    Counts the steps before the first one at or below the threshold; ``T`` when it never drops.
    A NaN (or inf) correlation (diverged rollout) counts as a drop -- the documented failed
    value is the count of good steps before it (0 if the first step is NaN).
    """
    corr = _float(_as_tensor(corr))
    above = torch.isfinite(corr) & (corr > threshold)  # NaN/inf count as a drop
    return torch.cumprod(above.to(torch.int64), dim=-1).sum(dim=-1)


def quantile_levels() -> np.ndarray:
    """Default calibration levels 0.05, 0.10, ..., 0.95 (19 levels)."""
    return np.round(np.arange(1, 20) * 0.05, 10)


def empirical_quantiles(ensemble, levels) -> Tensor:
    """Ensemble quantiles along dim 0: ``(M, ...) -> (L, ...)``.

    Uses the Weibull plotting position (Hyndman & Fan type 6, numpy ``method="weibull"``): the
    p-quantile sits at 1-based order statistic ``p (M + 1)``, linearly interpolated and clamped
    to the smallest/largest member. For an exchangeable (calibrated) ensemble this gives
    ``P(y <= q_p) = p`` for ``1/(M+1) <= p <= M/(M+1)``, so a calibrated ensemble of any size has
    an unbiased calibration curve (numpy's default ``linear`` position is biased by
    ``(1 - 2p)/(M + 1)``).
    """
    ens = _float(_as_tensor(ensemble))
    m = ens.shape[0]
    srt = torch.sort(ens, dim=0).values
    lv = torch.as_tensor(np.asarray(levels, dtype=np.float64))
    pos = (lv * (m + 1) - 1).clamp(0, m - 1)  # 0-based fractional position
    lo = pos.floor().long()
    hi = pos.ceil().long()
    frac = (pos - lo).to(ens.dtype).to(ens.device)
    shape = (-1,) + (1,) * (ens.ndim - 1)
    q_lo = srt[lo.to(ens.device)]
    q_hi = srt[hi.to(ens.device)]
    return q_lo + frac.view(shape) * (q_hi - q_lo)


def calibration_curve(ensemble, truth, levels=None) -> tuple[np.ndarray, np.ndarray]:
    """Regression calibration curve (Kuleshov et al. 2018) of an ensemble.

    ``ensemble``: ``(M, ...)`` members; ``truth``: ``(...)``. For each level ``p`` the predicted
    p-quantile of every element is the ensemble's empirical quantile
    (:func:`empirical_quantiles`), and ``observed[p]`` is the fraction of all elements whose
    truth is ``<=`` it. Returns ``(levels, observed)`` as float64 numpy arrays.
    Failed value: if the ensemble or truth contains NaN/inf, ``observed`` is all NaN.
    """
    lv = quantile_levels() if levels is None else np.asarray(levels, dtype=np.float64)
    ens = _float(_as_tensor(ensemble))
    y = _float(_as_tensor(truth, ens))
    if ens.ndim < 1 or ens.shape[0] < 1 or y.numel() == 0:
        raise ValueError("calibration_curve needs an ensemble (M, ...) with M >= 1 and a truth")
    y = torch.broadcast_to(y, ens.shape[1:])
    if not (bool(torch.isfinite(ens).all()) and bool(torch.isfinite(y).all())):
        return lv, np.full(lv.shape, np.nan)
    q = empirical_quantiles(ens, lv)
    observed = (y.unsqueeze(0) <= q).to(torch.float64).flatten(1).mean(dim=1)
    return lv, observed.cpu().numpy()


def quantile_ece(ensemble, truth, levels=None) -> float:
    """Quantile calibration error ``mean_j |p_j - p̂_j|`` (NaN if inputs are non-finite)."""
    lv, obs = calibration_curve(ensemble, truth, levels)
    return float(np.mean(np.abs(lv - obs)))


def crps_ensemble(ensemble, truth) -> Tensor:
    """CRPS of an M-member ensemble, standard (not "fair") form: ``(M, ...), (...) -> (...)``.

    ``CRPS = E|X - y| - 1/2 E|X - X'|`` with both expectations over the empirical ensemble
    distribution (the ``E|X - X'|`` term divides by ``M^2``, so it includes the ``i == j``
    zeros; the fair estimator would divide by ``M (M - 1)``). The spread term is computed in
    ``O(M log M)`` from the sorted members:
    ``sum_ij |x_i - x_j| = 2 sum_i (2i - M - 1) x_(i)``.
    NaN/inf members or truth give NaN/inf.
    """
    ens = _float(_as_tensor(ensemble))
    y = _float(_as_tensor(truth, ens))
    m = ens.shape[0]
    skill = (ens - y.unsqueeze(0)).abs().mean(dim=0)
    srt = torch.sort(ens, dim=0).values
    i = torch.arange(1, m + 1, dtype=ens.dtype, device=ens.device)
    coef = (2 * i - m - 1).view((-1,) + (1,) * (ens.ndim - 1))
    # 1/2 E|X - X'| = 1/2 * (2/M^2) sum_i (2i - M - 1) x_(i)
    spread = (coef * srt).sum(dim=0) / (m * m)
    if not bool(torch.isfinite(ens).all()):
        # sort puts NaN last and mixes inf with finite coefficients; make the failure explicit
        bad = ~torch.isfinite(ens).all(dim=0)
        spread = torch.where(bad, torch.full_like(spread, math.nan), spread)
    return skill - spread


def crps_gaussian(mu, sigma, y) -> Tensor:
    """Closed-form CRPS of N(mu, sigma^2) at y.

    ``sigma [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]`` with ``z = (y - mu) / sigma``;
    broadcasts its arguments. For mu=0, sigma=1: 0.23369 at y=0.
    """
    ref = next((a for a in (mu, sigma, y) if isinstance(a, Tensor)), None)
    mu = _float(_as_tensor(mu, ref))
    sigma = _float(_as_tensor(sigma, mu))
    y = _float(_as_tensor(y, mu))
    z = (y - mu) / sigma
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = torch.special.ndtr(z)
    return sigma * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))


def spread_skill_ratio(ensemble, truth) -> float:
    """Spread-skill ratio ``sqrt((M+1)/M) * spread / skill`` of an ``(M, ...)`` ensemble.

    ``spread = sqrt(mean over elements of the unbiased (M-1) ensemble variance)``,
    ``skill = RMSE of the ensemble mean``. The ``sqrt((M+1)/M)`` factor (Fortin et al. 2014)
    makes a calibrated (exchangeable) ensemble of any size score 1 in expectation: the ensemble
    mean of M members misses the truth with variance ``sigma^2 (1 + 1/M)``.
    > 1 under-confident (too much spread), < 1 over-confident. NaN for M < 2 or non-finite
    inputs; inf for a perfect ensemble mean with nonzero spread.
    """
    ens = _float(_as_tensor(ensemble))
    y = _float(_as_tensor(truth, ens))
    m = ens.shape[0]
    if m < 2:
        return math.nan
    if not (bool(torch.isfinite(ens).all()) and bool(torch.isfinite(y).all())):
        return math.nan
    spread = ens.var(dim=0, unbiased=True).mean().sqrt()
    skill = ((ens.mean(dim=0) - y) ** 2).mean().sqrt()
    spread_f, skill_f = float(spread), float(skill)
    if skill_f == 0.0:
        return math.inf if spread_f > 0 else math.nan
    return math.sqrt((m + 1) / m) * spread_f / skill_f
