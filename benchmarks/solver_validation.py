"""Solver validation: Schäfer–Turek 2D-2 (Re = 100) convergence table and 2D-1 (Re = 20).

Usage: ``python benchmarks/solver_validation.py [--resolutions 10 20] [--compile]``.
Prints St, c_D,max, c_L,max (2D-2) and c_D (2D-1) against cells per diameter D for two solver
variants: ``standard`` (BGK, rho = 1 Guo outlet) and ``dataset`` (He–Luo incompressible equilibrium
and characteristic outlet, the settings used by ``physics.dataset``).  The cylinder is a staircase
(half-way bounce-back), so forces converge slowly; the Strouhal number is the robust check.
"""

from __future__ import annotations

import argparse

from physweep.physics.validation import schafer_turek

VARIANTS = {"standard": dict(incompressible=False, outlet="fixed"),
            "dataset": dict(incompressible=True, outlet="characteristic")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolutions", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--skip-steady", action="store_true")
    args = ap.parse_args()
    print("Schäfer–Turek 2D-2 (Re=100); reference St [0.295,0.305], cD,max [3.22,3.24], "
          "cL,max [0.99,1.01]")
    print(f"{'variant':>9} {'D':>4} {'steps':>7} {'time_s':>7} {'St':>7} {'cD,max':>7} "
          f"{'cL,max':>7} {'mass':>9}")
    for v in args.variants:
        for d in args.resolutions:
            r = schafer_turek(d, 100.0, compile=args.compile, **VARIANTS[v])
            print(f"{v:>9} {d:>4} {r.steps:>7} {r.runtime_s:>7.1f} {r.strouhal:>7.4f} "
                  f"{r.cd_max:>7.3f} {r.cl_max:>7.3f} {r.mass_rel_change:>9.2e}", flush=True)
    if not args.skip_steady:
        print("Schäfer–Turek 2D-1 (Re=20); reference cD 5.5795, cL 0.0106")
        for v in args.variants:
            for d in args.resolutions:
                r = schafer_turek(d, 20.0, spinup_convective=60.0, measure_convective=5.0,
                                  compile=args.compile, **VARIANTS[v])
                print(f"{v:>9} D={d}: cD={r.cd_mean:.4f} ({100 * (r.cd_mean / 5.5795 - 1):+.2f}%)"
                      f" cL={r.cl_mean:.4f} steps={r.steps} time={r.runtime_s:.1f}s", flush=True)


if __name__ == "__main__":
    main()
