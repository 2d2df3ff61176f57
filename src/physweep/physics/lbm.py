"""D2Q9 lattice Boltzmann solver for 2D incompressible channel flow around obstacles (PyTorch).

Method
------
* Lattice: D2Q9, velocities ``E`` (rest, 4 axis, 4 diagonal), weights 4/9, 1/9, 1/36,
  speed of sound c_s^2 = 1/3.  All quantities inside the solver are in lattice units
  (dx = dt = 1, reference density 1); the kinematic viscosity is nu = (tau - 1/2) / 3.
* Layout: populations ``f`` of shape (B, 9, NY, NX): a batch of independent trajectories
  (each with its own obstacle mask, relaxation time and inlet profile) is advanced together.
  Row index = y (0 at the bottom wall), column index = x (0 at the inlet).
* Collision: single-relaxation-time BGK, f <- f - (f - f^eq) / tau with the second-order
  equilibrium f^eq_i = w_i rho (1 + 3 e.u + 9/2 (e.u)^2 - 3/2 u^2).  An optional constant body
  force uses Guo's forcing scheme (velocity shifted by F / 2 rho, source (1 - 1/2tau) S_i).
* Streaming: ``torch.roll`` per direction (periodic wrap), after which every boundary rewrites
  the populations that the wrap got wrong.
* Walls and obstacles: half-way bounce-back.  A population that would have streamed out of a
  solid node (or through the top/bottom wall) is replaced by the post-collision population of the
  opposite direction at the same fluid node.  The wall therefore sits half a cell outside the last
  fluid node: with NY fluid rows the channel height is exactly NY (walls at y = -1/2, NY - 1/2),
  and cell-centred nodes are at y = j + 1/2 measured from the wall.
* Inlet (x = 0, open mode): velocity inlet by non-equilibrium bounce-back (Zou-He *without* the
  transverse correction term, which was found to excite a period-3 mode at tau <= 0.54):
  rho = (f0 + f2 + f4 + 2 (f3 + f6 + f7)) / (1 - u_in), f_i = f_opp(i) + 6 w_i rho e_i.u_in for
  the three unknown populations (1, 5, 8).
* Outlet (x = NX - 1, open mode): non-equilibrium extrapolation (Guo et al. 2002) at rho = 1:
  f(NX-1) = f^eq(1, u(NX-2)) + [f(NX-2) - f^eq(rho(NX-2), u(NX-2))] for all nine populations.
  (Zero-gradient and fixed-pressure Zou-He outlets were found unstable / mass-creeping.)
* Options used for datasets: ``outlet="characteristic"`` sets the outlet density to
  1 + (<u>_y - <u_in>_y) / c_s (plane-wave non-reflecting; a rho = 1 outlet and the velocity inlet
  form a quarter-wave resonator that is practically undamped at tau ~ 0.52), and
  ``incompressible=True`` uses He & Luo's (1997) incompressible equilibrium
  w_i (rho + 3 e.j + 9/2 (e.j)^2 - 3/2 j^2), velocity = momentum j, so steady column fluxes are
  conserved exactly.  An optional outlet sponge layer is also available.
* Curved obstacles (option ``wall_q``, default off): interpolated bounce-back of Bouzidi,
  Firdaouss & Lallemand (2001), linear variant.  For a fluid node x whose link i (direction e_i)
  crosses the obstacle surface at x + q e_i, 0 < q <= 1 (q = 1/2 is the half-way wall), the
  population returning along -e_i =: e_k after streaming is
      q <  1/2:  f_k(x) = 2q f_i^post(x) + (1 - 2q) f_i^post(x + e_k)
      q >= 1/2:  f_k(x) = f_i^post(x) / (2q) + (2q - 1) / (2q) f_k^post(x)
  (q = 1/2 reduces exactly to half-way bounce-back; where x + e_k is not a fluid node inside the
  domain the q < 1/2 branch falls back to plain bounce-back).  q comes from the exact geometry:
  :func:`disk_link_fractions` (closed form for a disk) or :func:`sdf_link_fractions` (root of any
  signed-distance function along each link).  The scheme is not exactly mass conserving; the
  leak is O(q-interpolation error) and does not accumulate for a steady or periodic flow.
* Solid nodes are reset to rest equilibrium every step; they never feed the fluid.
* Forces on obstacles by momentum exchange (stationary walls): every boundary link carries
  f_i^post(x) out along e_i and brings f_k(x, t + 1) back along e_k = -e_i, so
  F = sum over links of e_i [f_i^post(x) + f_k(x, t + 1)].  With half-way bounce-back this is
  2 f_i^post e_i; with ``wall_q`` the interpolated f_k is used (Mei et al. 2002; the Galilean-
  invariant form of Wen et al. 2014, sum of f_i^post (e_i - u_w) - f_k (e_k - u_w), is identical for
  u_w = 0).  Top/bottom channel walls are excluded from the force.  c_D = 2 F_x / (rho U^2 D) in
  lattice units.
* Precision: default float64 (float32 drifts the mass by ~1e-4 per 10k steps).
* ``compile=True`` wraps the step in ``torch.compile`` (off by default; eager works everywhere).
  The curved-link arrays are marked dynamic, so geometries with different link counts share one
  graph; if compiling fails (e.g. no C++ toolchain) the solver warns and steps eagerly.

x-boundary modes: ``"open"`` (inlet/outlet as above), ``"periodic"`` (e.g. body-force driven
Poiseuille flow), ``"wall"`` (closed box: bounce-back on all four sides).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

E = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, 1), (-1, -1), (1, -1))
W = (4 / 9, 1 / 9, 1 / 9, 1 / 9, 1 / 9, 1 / 36, 1 / 36, 1 / 36, 1 / 36)
OPP = (0, 3, 4, 1, 2, 7, 8, 5, 6)
CS2 = 1.0 / 3.0
X_MODES = ("open", "periodic", "wall")
_COMPILE_FAILED = False  # set when torch.compile of the step failed once in this process


def tau_from_nu(nu: float | Tensor) -> float | Tensor:
    """BGK relaxation time for a lattice kinematic viscosity ``nu``."""
    return 3.0 * nu + 0.5


def nu_from_tau(tau: float | Tensor) -> float | Tensor:
    return (tau - 0.5) / 3.0


def parabolic_profile(ny: int, u_mean: float | Tensor, *, dtype=torch.float64,
                      device=None) -> Tensor:
    """Poiseuille inlet profile on ``ny`` cell-centred rows, walls half a cell outside.

    Returns (ny,) if ``u_mean`` is a float, (B, ny) if it is a (B,) tensor.  Mean over the exact
    parabola is ``u_mean`` (maximum 1.5 u_mean).
    """
    y = (torch.arange(ny, dtype=dtype, device=device) + 0.5) / ny
    shape = 6.0 * y * (1.0 - y)
    if isinstance(u_mean, Tensor):
        return u_mean.to(dtype=dtype, device=device).reshape(-1, 1) * shape
    return u_mean * shape


def disk_mask(ny: int, nx: int, cx: float, cy: float, r: float, device=None) -> Tensor:
    """Solid mask (NY, NX) of a disk; centre/radius in lattice units with node j at y = j + 1/2."""
    y = torch.arange(ny, dtype=torch.float64, device=device).view(-1, 1) + 0.5
    x = torch.arange(nx, dtype=torch.float64, device=device).view(1, -1) + 0.5
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _link_valid_mask(solid: Tensor) -> Tensor:
    """(B, 9, NY, NX): True where fluid node x has an obstacle node at x - e_k (obstacle link)."""
    b, ny, nx = solid.shape
    p = torch.nn.functional.pad(solid, (1, 1, 1, 1), value=False)
    out = []
    for ex, ey in E:
        out.append(~solid & p[:, 1 - ey:1 - ey + ny, 1 - ex:1 - ex + nx])
    return torch.stack(out, 1)


def disk_link_fractions(ny: int, nx: int, cx: float, cy: float, r: float,
                        solid: Tensor | None = None, device=None) -> Tensor:
    """Exact wall fractions q for a disk, shape (9, NY, NX), float64.

    Entry (k, y, x) is defined on obstacle links, i.e. fluid node x = (j + 1/2, ..) whose neighbour
    x - e_k is solid: the surface crosses the segment from x towards x - e_k at x - q e_k, q in
    (0, 1].  Other entries are 1/2.  ``solid`` defaults to :func:`disk_mask` (nodes with
    |x - c| <= r), which makes q well defined on every link.
    """
    if solid is None:
        solid = disk_mask(ny, nx, cx, cy, r, device=device)
    solid = solid.to(device=device)
    y = torch.arange(ny, dtype=torch.float64, device=device).view(-1, 1) + 0.5 - cy
    x = torch.arange(nx, dtype=torch.float64, device=device).view(1, -1) + 0.5 - cx
    links = _link_valid_mask(solid.unsqueeze(0))[0]
    q = torch.full((9, ny, nx), 0.5, dtype=torch.float64, device=device)
    for k, (ex, ey) in enumerate(E):
        if k == 0:
            continue
        # |p - t e|^2 = r^2 with p = x - c, direction -e_k: t^2 |e|^2 - 2 t p.e + |p|^2 - r^2 = 0
        a = float(ex * ex + ey * ey)
        pe = x * ex + y * ey
        cc = x * x + y * y - r * r
        disc = (pe * pe - a * cc).clamp_min(0.0)
        t = (pe - torch.sqrt(disc)) / a  # first crossing (smaller root)
        q[k] = torch.where(links[k], t.clamp(1e-12, 1.0), q[k])
    return q


def sdf_link_fractions(sdf: Callable[[Tensor, Tensor], Tensor], solid: Tensor,
                       iters: int = 60) -> Tensor:
    """Wall fractions q from a signed-distance function (negative inside), shape like
    (B, 9, NY, NX) or (9, NY, NX) for a 2-D ``solid``.

    ``sdf(x, y)`` takes lattice coordinates (node j at j + 1/2) and returns the signed distance.
    On every obstacle link (fluid x, solid x - e_k) the root of sdf(x - t e_k) in (0, 1] is found by
    bisection (``iters`` halvings: exact to round-off for any continuous sdf with one crossing per
    link).  ``solid`` should be sdf <= 0 at the nodes (as :func:`disk_mask`).  Other entries: 1/2.
    """
    squeeze = solid.dim() == 2
    sol = solid.unsqueeze(0) if squeeze else solid
    b, ny, nx = sol.shape
    dev = sol.device
    y = (torch.arange(ny, dtype=torch.float64, device=dev) + 0.5).view(-1, 1).expand(ny, nx)
    x = (torch.arange(nx, dtype=torch.float64, device=dev) + 0.5).view(1, -1).expand(ny, nx)
    links = _link_valid_mask(sol)
    q = torch.full((b, 9, ny, nx), 0.5, dtype=torch.float64, device=dev)
    for k, (ex, ey) in enumerate(E):
        if k == 0:
            continue
        lo = torch.zeros(ny, nx, dtype=torch.float64, device=dev)  # sdf > 0 (fluid side)
        hi = torch.ones(ny, nx, dtype=torch.float64, device=dev)  # sdf <= 0
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            inside = sdf(x - mid * ex, y - mid * ey) <= 0
            hi = torch.where(inside, mid, hi)
            lo = torch.where(inside, lo, mid)
        t = 0.5 * (lo + hi)
        q[:, k] = torch.where(links[:, k], t.clamp(1e-12, 1.0), q[:, k])
    return q[0] if squeeze else q


def _feq(rho: Tensor, ux: Tensor, uy: Tensor, ex: Tensor, ey: Tensor, w: Tensor,
         incomp: bool = False) -> Tensor:
    """Equilibrium populations; rho, ux, uy (B, ...) -> (B, 9, ...).

    ``incomp``: He & Luo (1997) incompressible form w (rho + 3 e.u + 9/2 (e.u)^2 - 3/2 u^2), in
    which u is the momentum j (rho_0 = 1); else the standard w rho (1 + ...).
    """
    rho = rho.unsqueeze(1)
    ux = ux.unsqueeze(1)
    uy = uy.unsqueeze(1)
    eu = ex * ux + ey * uy
    usq = ux * ux + uy * uy
    if incomp:
        return w * (rho + 3.0 * eu + 4.5 * eu * eu - 1.5 * usq)
    return w * rho * (1.0 + 3.0 * eu + 4.5 * eu * eu - 1.5 * usq)


def _step(f: Tensor, c: dict[str, Tensor], x_mode: str, forced: bool,
          want_post: bool, incomp: bool = False,
          char_outlet: bool = False) -> tuple[Tensor, Tensor | None]:
    """One collide-stream-boundary update.  Pure function of tensors (compilable)."""
    ex, ey, w = c["ex"], c["ey"], c["w"]
    rho = f.sum(1)
    jx = (f * ex).sum(1)
    jy = (f * ey).sum(1)
    if forced:
        fx, fy = c["force"][:, 0:1, None], c["force"][:, 1:2, None]
        jx = jx + 0.5 * fx
        jy = jy + 0.5 * fy
    ux = jx if incomp else jx / rho
    uy = jy if incomp else jy / rho
    feq = _feq(rho, ux, uy, ex, ey, w, incomp)
    inv_tau = c["inv_tau"]
    fpost = f - (f - feq) * inv_tau
    if "sponge" in c:
        # outlet sponge: relax towards f^eq(rho = 1, u) so that acoustic waves leave the domain
        sig = c["sponge"]  # (1, 1, 1, NX), zero outside the sponge columns
        fpost = fpost - sig * (fpost - _feq(torch.ones_like(rho), ux, uy, ex, ey, w, incomp))
    if forced:
        fxb, fyb = fx.unsqueeze(1), fy.unsqueeze(1)
        uxb, uyb = ux.unsqueeze(1), uy.unsqueeze(1)
        eu = ex * uxb + ey * uyb
        src = w * (3.0 * ((ex - uxb) * fxb + (ey - uyb) * fyb) + 9.0 * eu * (ex * fxb + ey * fyb))
        fpost = fpost + (1.0 - 0.5 * inv_tau) * src
    # streaming (periodic wrap, fixed below by the boundaries)
    parts = [fpost[:, 0]]
    for i in range(1, 9):
        parts.append(torch.roll(fpost[:, i], shifts=(E[i][1], E[i][0]), dims=(1, 2)))
    fs = torch.stack(parts, 1)
    # half-way bounce-back on walls and obstacles
    fs = torch.where(c["bb"], fpost[:, list(OPP)], fs)
    if "bz_dst" in c:
        # interpolated (Bouzidi) bounce-back on the curved-obstacle links, gathered sparsely
        flat = fpost.reshape(-1)
        val = (c["bz_a"] * flat[c["bz_src_opp"]] + c["bz_b"] * flat[c["bz_src_nb"]]
               + c["bz_c"] * flat[c["bz_src_k"]])
        fs = fs.reshape(-1).index_put((c["bz_dst"],), val).reshape(fpost.shape)
    if x_mode == "open":
        # inlet: non-equilibrium bounce-back, unknowns 1, 5, 8
        uin = c["inflow"]  # (B, NY)
        col = fs[:, :, :, 0]
        known = col[:, 0] + col[:, 2] + col[:, 4] + 2.0 * (col[:, 3] + col[:, 6] + col[:, 7])
        # momentum imposed at the inlet: rho u_in (standard) or u_in itself (incompressible)
        jin = uin if incomp else known / (1.0 - uin) * uin
        f1 = col[:, 3] + (2.0 / 3.0) * jin
        f5 = col[:, 7] + (1.0 / 6.0) * jin
        f8 = col[:, 6] + (1.0 / 6.0) * jin
        newcol = torch.stack([col[:, 0], f1, col[:, 2], col[:, 3], col[:, 4], f5, col[:, 6],
                              col[:, 7], f8], 1)
        # outlet: non-equilibrium extrapolation at rho = 1
        nb = fs[:, :, :, -2]
        rn = nb.sum(1)
        un = (nb * ex[..., 0]).sum(1)
        vn = (nb * ey[..., 0]).sum(1)
        if not incomp:
            un = un / rn
            vn = vn / rn
        exc, eyc, wc = ex[..., 0], ey[..., 0], w[..., 0]
        if char_outlet:
            # plane-wave non-reflecting: the incoming characteristic u - c_s rho' keeps its mean
            # value, i.e. rho_out = 1 + (<u>_y - <u_in>_y) / c_s (uniform over the column)
            rho_t = 1.0 + (un.mean(1, keepdim=True) - uin.mean(1, keepdim=True)) / math.sqrt(CS2)
            rho_t = rho_t.expand_as(rn)
        else:
            rho_t = torch.ones_like(rn)
        outcol = (_feq(rho_t, un, vn, exc, eyc, wc, incomp) + nb
                  - _feq(rn, un, vn, exc, eyc, wc, incomp))
        fs = torch.cat([newcol.unsqueeze(-1), fs[:, :, :, 1:-1], outcol.unsqueeze(-1)], dim=3)
    # solid nodes: rest equilibrium
    fs = torch.where(c["solid"], c["rest"], fs)
    return fs, (fpost if want_post else None)


class LBMSolver:
    """Batched D2Q9 BGK channel solver (see module docstring for the method).

    Parameters
    ----------
    solid : (B, NY, NX) or (NY, NX) bool, True inside obstacles (walls top/bottom are implicit).
    tau : float or (B,) relaxation times.
    inflow : (B, NY) or (NY,) inlet u-profile in lattice units (required for ``x_mode="open"``).
    x_mode : "open" | "periodic" | "wall".
    walls : half-way bounce-back walls at top and bottom (default True; False = periodic in y).
    body_force : optional (2,) or (B, 2) constant force density (Guo forcing).
    sponge : width (columns) of an outlet sponge layer; there the post-collision populations are
        relaxed towards f^eq(rho = 1, u) with a quadratic ramp up to ``sponge_strength``.  It
        absorbs the channel's acoustic modes (quarter-wave between the velocity inlet and the
        rho = 1 outlet, practically undamped at tau ~ 0.52) at the price of a modified pressure
        in the last columns.  0 (default) disables it.
    incompressible : use the He & Luo (1997) incompressible equilibrium (still BGK): the velocity
        is the momentum j (rho_0 = 1), so steady flows satisfy div u = 0 and column flux
        conservation exactly instead of up to O(Ma^2) density variations; the inlet imposes j.
    outlet : "fixed" (Guo extrapolation at rho = 1) or "characteristic" (Guo extrapolation at
        rho = 1 + (<u> - <u_in>) / c_s: plane acoustic waves leave without reflection, which
        removes the quarter-wave resonance between the velocity inlet and a rho = 1 outlet).
    wall_q : optional (B, 9, NY, NX) or (9, NY, NX) wall fractions of the obstacle links (from
        :func:`disk_link_fractions` / :func:`sdf_link_fractions`): enables interpolated (Bouzidi)
        bounce-back and the matching momentum-exchange force on obstacles.  None (default): all
        obstacles are staircases with half-way bounce-back (channel walls always are).
    """

    def __init__(self, solid: Tensor, tau: float | Tensor, inflow: Tensor | None = None, *,
                 x_mode: str = "open", walls: bool = True, body_force: Tensor | None = None,
                 dtype: torch.dtype = torch.float64, device: str | torch.device | None = None,
                 compile: bool = False, sponge: int = 0, sponge_strength: float = 0.2,
                 incompressible: bool = False, outlet: str = "fixed",
                 wall_q: Tensor | None = None) -> None:
        if x_mode not in X_MODES:
            raise ValueError(f"x_mode must be one of {X_MODES}, got {x_mode!r}")
        device = torch.device(device) if device is not None else solid.device
        solid = solid.to(device=device, dtype=torch.bool)
        if solid.dim() == 2:
            solid = solid.unsqueeze(0)
        b, ny, nx = solid.shape
        self.shape = (b, ny, nx)
        self.x_mode = x_mode
        self.dtype = dtype
        self.device = device
        tau_t = torch.as_tensor(tau, dtype=dtype, device=device).reshape(-1)
        if tau_t.numel() == 1:
            tau_t = tau_t.expand(b)
        if bool((tau_t <= 0.5).any()):
            raise ValueError("tau must be > 0.5 (positive viscosity)")
        self.tau = tau_t.clone()
        if x_mode == "open":
            if inflow is None:
                raise ValueError("x_mode='open' needs an inflow profile")
            if bool(solid[:, :, 0].any() | solid[:, :, -1].any()):
                raise ValueError("obstacles must not touch the inlet/outlet columns")
        if inflow is not None:
            inflow = inflow.to(device=device, dtype=dtype)
            if inflow.dim() == 1:
                inflow = inflow.unsqueeze(0).expand(b, ny)
            inflow = inflow.contiguous().clone()  # own copy: set_inflow writes into it
        self.inflow = inflow
        ex = torch.tensor([e[0] for e in E], dtype=dtype, device=device).view(1, 9, 1, 1)
        ey = torch.tensor([e[1] for e in E], dtype=dtype, device=device).view(1, 9, 1, 1)
        w = torch.tensor(W, dtype=dtype, device=device).view(1, 9, 1, 1)
        self.solid = solid
        self.fluid = ~solid
        bb, bb_obs = self._bounce_masks(solid, walls)
        c = {"ex": ex, "ey": ey, "w": w, "inv_tau": (1.0 / self.tau).view(b, 1, 1, 1),
             "bb": bb, "solid": solid.unsqueeze(1), "rest": w.expand(1, 9, 1, 1)}
        if inflow is not None:
            c["inflow"] = inflow
        if sponge > 0:
            xs = torch.arange(nx, dtype=dtype, device=device)
            ramp = ((xs - (nx - 1 - sponge)) / sponge).clamp(0.0, 1.0) ** 2
            c["sponge"] = (sponge_strength * ramp).view(1, 1, 1, nx)
        self.forced = body_force is not None
        if outlet not in ("fixed", "characteristic"):
            raise ValueError(f"outlet must be 'fixed' or 'characteristic', got {outlet!r}")
        self.incomp = bool(incompressible)
        self.char_outlet = outlet == "characteristic"
        if body_force is not None:
            bf = torch.as_tensor(body_force, dtype=dtype, device=device).reshape(-1, 2)
            c["force"] = bf.expand(b, 2).contiguous()
        self.bb_obs = bb_obs
        self.curved = wall_q is not None
        if wall_q is not None:
            self._setup_curved(c, wall_q, bb_obs)
        self.consts = c
        self._step_fn: Callable = _step
        if compile and not _COMPILE_FAILED:
            self._step_fn = torch.compile(_step, dynamic=False)
            if self.curved:  # the link count differs between geometries: one graph for all
                for k in ("bz_dst", "bz_src_opp", "bz_src_nb", "bz_src_k", "bz_a", "bz_b",
                          "bz_c"):
                    torch._dynamo.mark_dynamic(c[k], 0)
        self.time = 0
        self.f = self.equilibrium(torch.ones(b, ny, nx, dtype=dtype, device=device),
                                  torch.zeros(b, ny, nx, dtype=dtype, device=device),
                                  torch.zeros(b, ny, nx, dtype=dtype, device=device))
        self._last_post: Tensor | None = None

    def _bounce_masks(self, solid: Tensor, walls: bool) -> tuple[Tensor, Tensor]:
        b, ny, nx = solid.shape
        fluid = ~solid

        def padded(base: Tensor, wall_y: bool, wall_x: bool) -> Tensor:
            p = base
            if self.x_mode == "periodic":
                p = torch.cat([p[:, :, -1:], p, p[:, :, :1]], dim=2)
            else:
                p = torch.nn.functional.pad(p, (1, 1), value=wall_x)
            if walls:
                p = torch.nn.functional.pad(p, (0, 0, 1, 1), value=wall_y)
            else:
                p = torch.cat([p[:, -1:], p, p[:, :1]], dim=1)
            return p

        full = padded(solid, True, self.x_mode == "wall")
        obs = padded(solid, False, False)
        bb, bbo = [], []
        for ex, ey in E:
            # source node of direction i is x - e_i
            sl = (slice(None), slice(1 - ey, 1 - ey + ny), slice(1 - ex, 1 - ex + nx))
            bb.append(fluid & full[sl])
            bbo.append(fluid & obs[sl])
        return torch.stack(bb, 1), torch.stack(bbo, 1)

    def _setup_curved(self, c: dict[str, Tensor], wall_q: Tensor, bb_obs: Tensor) -> None:
        """Flat gather/scatter indices and Bouzidi coefficients for every obstacle link."""
        b, ny, nx = self.shape
        q = torch.as_tensor(wall_q, device=self.device).to(torch.float64)
        if q.dim() == 3:
            q = q.unsqueeze(0)
        q = q.expand(b, 9, ny, nx)
        bi, k, yy, xx = bb_obs.nonzero(as_tuple=True)
        ql = q[bi, k, yy, xx]
        if ql.numel() and not bool(((ql > 0) & (ql <= 1)).all()):
            raise ValueError("wall_q must lie in (0, 1] on every obstacle link")
        opp = torch.tensor(OPP, device=self.device)[k]
        ex = torch.tensor([e[0] for e in E], device=self.device)[k]
        ey = torch.tensor([e[1] for e in E], device=self.device)[k]
        # second fluid node x + e_k (the q < 1/2 branch); fall back to plain bounce-back if absent
        y2, x2 = yy + ey, xx + ex
        inside = (y2 >= 0) & (y2 < ny) & (x2 >= 0) & (x2 < nx)
        y2c, x2c = y2.clamp(0, ny - 1), x2.clamp(0, nx - 1)
        has_nb = inside & self.fluid[bi, y2c, x2c]
        small = ql < 0.5
        one = torch.ones_like(ql)
        zero = torch.zeros_like(ql)
        a = torch.where(small, torch.where(has_nb, 2.0 * ql, one), 0.5 / ql)
        bcoef = torch.where(small & has_nb, 1.0 - 2.0 * ql, zero)
        ccoef = torch.where(small, zero, (2.0 * ql - 1.0) / (2.0 * ql))

        def flat(bb_, kk, y_, x_):
            return ((bb_ * 9 + kk) * ny + y_) * nx + x_

        c["bz_dst"] = flat(bi, k, yy, xx)
        c["bz_src_opp"] = flat(bi, opp, yy, xx)
        c["bz_src_nb"] = flat(bi, opp, y2c, x2c)
        c["bz_src_k"] = flat(bi, k, yy, xx)
        c["bz_a"] = a.to(self.dtype)
        c["bz_b"] = bcoef.to(self.dtype)
        c["bz_c"] = ccoef.to(self.dtype)
        self.wall_q = q
        self._bz_batch = bi
        self._bz_ex = ex.to(self.dtype)
        self._bz_ey = ey.to(self.dtype)

    # ---------------------------------------------------------------- state
    def equilibrium(self, rho: Tensor, ux: Tensor, uy: Tensor) -> Tensor:
        ex = torch.tensor([e[0] for e in E], dtype=self.dtype, device=self.device).view(1, 9, 1, 1)
        ey = torch.tensor([e[1] for e in E], dtype=self.dtype, device=self.device).view(1, 9, 1, 1)
        w = torch.tensor(W, dtype=self.dtype, device=self.device).view(1, 9, 1, 1)
        return _feq(rho, ux, uy, ex, ey, w, self.incomp)

    def initialize(self, ux: Tensor | None = None, uy: Tensor | None = None,
                   rho: Tensor | None = None) -> None:
        """Set f to equilibrium of the given fields (B, NY, NX); velocity is zeroed in solids."""
        b, ny, nx = self.shape
        kw = {"dtype": self.dtype, "device": self.device}
        z = torch.zeros(b, ny, nx, **kw)
        ux = z if ux is None else ux.to(**kw).expand(b, ny, nx)
        uy = z if uy is None else uy.to(**kw).expand(b, ny, nx)
        rho = torch.ones(b, ny, nx, **kw) if rho is None else rho.to(**kw).expand(b, ny, nx)
        ux = torch.where(self.solid, 0.0, ux)
        uy = torch.where(self.solid, 0.0, uy)
        self.f = self.equilibrium(rho, ux, uy).contiguous()
        self.time = 0

    def _compile_failed(self, exc: Exception) -> None:
        global _COMPILE_FAILED
        warnings.warn(f"torch.compile of the LBM step failed ({type(exc).__name__}: "
                      f"{str(exc)[:200]}); continuing eagerly", stacklevel=3)
        _COMPILE_FAILED = True  # later solvers do not try again
        self._step_fn = _step

    def set_inflow(self, inflow: Tensor) -> None:
        """Replace the inlet profile in place ((B, NY) or (NY,), lattice units), e.g. for a
        start-up ramp; the next :meth:`step` (compiled or not) imposes the new values."""
        if self.inflow is None:
            raise ValueError("set_inflow needs a solver built with an inflow profile")
        self.inflow.copy_(torch.as_tensor(inflow, dtype=self.dtype, device=self.device)
                          .expand_as(self.inflow))

    def step(self, n: int = 1, *, track_force: bool = False) -> Tensor | None:
        """Advance ``n`` steps.  With ``track_force`` return obstacle forces (n, B, 2).

        The forces are written into one tensor allocated before the loop. Keeping one small
        tensor per step alive instead (a list stacked at the end) made the process grow by
        gigabytes over long loops: each survivor pins the top of glibc's heap above the step's
        megabyte-sized temporaries, so the freed space is neither reused nor returned (a D = 40
        Schäfer–Turek row grew to 24 GB; issue #16).
        """
        forces = (torch.empty(n, self.shape[0], 2, dtype=self.dtype, device=self.device)
                  if track_force else None)
        for i in range(n):
            args = (self.f, self.consts, self.x_mode, self.forced, track_force, self.incomp,
                    self.char_outlet)
            if self._step_fn is _step:
                self.f, post = _step(*args)
            else:
                try:
                    self.f, post = self._step_fn(*args)
                except Exception as exc:  # e.g. no C++ toolchain for inductor: step eagerly
                    self._compile_failed(exc)
                    self.f, post = _step(*args)
            if forces is not None:
                forces[i] = self._force_from_post(post)
            self.time += 1
        return forces

    def _force_from_post(self, post: Tensor) -> Tensor:
        if self.curved:
            # F = sum over links of e_i (f_i^post(x) + f_k(x, t+1)), e_i = -e_k (Mei et al. 2002)
            c = self.consts
            mom = post.reshape(-1)[c["bz_src_opp"]] + self.f.reshape(-1)[c["bz_dst"]]
            b = self.shape[0]
            fx = torch.zeros(b, dtype=post.dtype, device=post.device).index_add(
                0, self._bz_batch, -mom * self._bz_ex)
            fy = torch.zeros(b, dtype=post.dtype, device=post.device).index_add(
                0, self._bz_batch, -mom * self._bz_ey)
            return torch.stack([fx, fy], -1)
        ex = self.consts["ex"]
        ey = self.consts["ey"]
        po = post[:, list(OPP)]
        m = self.bb_obs.to(post.dtype)
        fx = -2.0 * (m * po * ex).sum((1, 2, 3))
        fy = -2.0 * (m * po * ey).sum((1, 2, 3))
        return torch.stack([fx, fy], -1)

    def macroscopic(self) -> tuple[Tensor, Tensor, Tensor]:
        """(rho, ux, uy), each (B, NY, NX); zero velocity / unit density in solids."""
        f = self.f
        rho = f.sum(1)
        jx = (f * self.consts["ex"]).sum(1)
        jy = (f * self.consts["ey"]).sum(1)
        if self.forced:
            jx = jx + 0.5 * self.consts["force"][:, 0:1, None]
            jy = jy + 0.5 * self.consts["force"][:, 1:2, None]
        if not self.incomp:
            jx, jy = jx / rho, jy / rho
        ux = torch.where(self.solid, 0.0, jx)
        uy = torch.where(self.solid, 0.0, jy)
        rho = torch.where(self.solid, 1.0, rho)
        return rho, ux, uy

    def pressure(self) -> Tensor:
        """Lattice kinematic pressure c_s^2 (rho - 1), relative to the outlet (rho = 1)."""
        rho, _, _ = self.macroscopic()
        return CS2 * (rho - 1.0)

    def fluid_mass(self) -> Tensor:
        """Total density over fluid nodes, (B,)."""
        return torch.where(self.solid, 0.0, self.f.sum(1)).sum((1, 2))


def strouhal(signal: Tensor | list[float], dt: float = 1.0) -> float:
    """Dominant frequency (1/time) of a signal by FFT with a Hann window and parabolic peak fit."""
    import numpy as np

    s = np.asarray(signal, dtype=np.float64)
    s = s - s.mean()
    n = len(s)
    win = np.hanning(n)
    spec = np.abs(np.fft.rfft(s * win, n=8 * n))
    k = int(np.argmax(spec[1:]) + 1)
    if 1 <= k < len(spec) - 1:
        a, b_, c = np.log(spec[k - 1] + 1e-300), np.log(spec[k] + 1e-300), np.log(
            spec[k + 1] + 1e-300)
        denom = a - 2 * b_ + c
        k = k + (0.5 * (a - c) / denom if denom != 0 else 0.0)
    return float(k / (8 * n * dt))


def drag_lift_coefficients(force: Tensor, u_mean: float, diameter: float) -> Tensor:
    """c_D, c_L = 2 F / (rho U^2 D) (lattice units, rho = 1); force (..., 2)."""
    return 2.0 * force / (u_mean**2 * diameter)


__all__ = ["E", "W", "OPP", "LBMSolver", "parabolic_profile", "disk_mask", "disk_link_fractions",
           "sdf_link_fractions", "tau_from_nu",
           "nu_from_tau", "strouhal", "drag_lift_coefficients"]
