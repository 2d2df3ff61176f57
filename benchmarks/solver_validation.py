"""Solver validation: Schäfer–Turek 2D-2 (Re = 100) convergence table and 2D-1 (Re = 20).

Usage: ``python benchmarks/solver_validation.py [--resolutions 10 20] [--no-compile]
[--staircase] [--threads 1]``.

A D = 40 row (``--resolutions 10 20 40``) once grew to 24 GB resident memory and was killed:
``LBMSolver.step(n, track_force=True)`` kept one small force tensor per step alive, and each
pinned the top of glibc's heap above the step's temporaries (issue #16; fixed, with a regression
test in tests/physics/test_lbm_memory.py). Now the run with D = 40 peaks at 0.64 GB and takes
11 minutes on one thread (compiled; D = 40 row 539 s): St 0.2997, c_D,max 3.2533 (+0.72 %),
c_L,max 1.0351 (+3.51 %); a D = 40 run from an impulsive start (no grid sequencing) reads the
same (0.2997, 3.2556, 1.0371). The default stops at D = 20, which already meets the 5% target.

2D-2: St, c_D,max, c_L,max and their errors against the centre of the published intervals
(St 0.300, c_D,max 3.23, c_L,max 1.00) for each cells-per-diameter D, with the runtime of the row.
Solver: D2Q9 BGK, He–Luo incompressible equilibrium and characteristic outlet (the dataset's
settings), curved cylinder by interpolated (Bouzidi) bounce-back with exact wall fractions and the
matching momentum-exchange force; lattice inflow maximum 0.1 (Mach 0.17).  Each finer row starts
from the previous row's saturated flow (grid sequencing, ``--no-sequencing`` to start impulsively)
and measures only after the saturation test (c_D,max and the c_L amplitude change < 0.2% between
blocks of 1.5 periods), over 12 convective times (~3.6 periods).  ``--staircase`` adds half-way
bounce-back rows for comparison.  The final table's header states which resolution meets the 5%
target on both force maxima with St in [0.295, 0.305].  2D-1: steady c_D against 5.5795.
"""

from __future__ import annotations

import argparse
import time

import torch

from physweep.physics.validation import CD_2D1_REF, CD_MAX_REF, CL_MAX_REF, ST_REF, schafer_turek, within

CD_REF = 0.5 * sum(CD_MAX_REF)
CL_REF = 0.5 * sum(CL_MAX_REF)


def _row(label, r) -> str:
    return (f"{label:>9} {r.resolution:>4} {r.steps:>7} {r.spinup_steps:>7} {r.runtime_s:>7.1f} "
            f"{r.strouhal:>7.4f} {r.cd_max:>7.4f} {100 * (r.cd_max / CD_REF - 1):>+7.2f} "
            f"{r.cl_max:>7.4f} {100 * (r.cl_max / CL_REF - 1):>+7.2f} {r.mass_rel_change:>9.2e}")


def ok5(r) -> bool:
    return (within(r.strouhal, ST_REF) and abs(r.cd_max / CD_REF - 1) <= 0.05
            and abs(r.cl_max / CL_REF - 1) <= 0.05)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolutions", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--steady-resolutions", type=int, nargs="*", default=[10, 20])
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-sequencing", action="store_true")
    ap.add_argument("--staircase", action="store_true", help="add half-way bounce-back rows")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    comp = not args.no_compile
    # one compiled graph per lattice shape and force flag: stay above the default limit of 8
    torch._dynamo.config.recompile_limit = 64
    head = (f"{'boundary':>9} {'D':>4} {'steps':>7} {'spinup':>7} {'time_s':>7} {'St':>7} "
            f"{'cD,max':>7} {'err%':>7} {'cL,max':>7} {'err%':>7} {'mass':>9}")
    print("Schäfer–Turek 2D-2 (Re=100); reference St [0.295,0.305], cD,max [3.22,3.24], "
          "cL,max [0.99,1.01]; u_max(lattice) 0.1", flush=True)
    print(head, flush=True)
    rows, prev = [], None
    t_all = time.perf_counter()
    for d in args.resolutions:
        seq = prev if not args.no_sequencing else None
        r = schafer_turek(d, 100.0, compile=comp, init_from=seq, keep_fields=True,
                          spinup_convective=8.0 if seq is not None else 20.0)
        prev = r
        rows.append(("curved", r))
        print(_row("curved", r), flush=True)
    if args.staircase:
        for d in args.resolutions[:2]:
            r = schafer_turek(d, 100.0, compile=comp, boundary="staircase")
            rows.append(("staircase", r))
            print(_row("staircase", r), flush=True)
    good = [r.resolution for lab, r in rows if lab == "curved" and ok5(r)]
    verdict = (f"5% target (cD,max and cL,max within 5% of 3.23 / 1.00, St in [0.295, 0.305]) met "
               f"at D = {', '.join(map(str, good))}; first at D = {good[0]}" if good
               else "5% target NOT met at any resolution run")
    print(f"\n=== Schäfer–Turek 2D-2 convergence (curved boundary); {verdict} ===")
    print(head)
    for lab, r in rows:
        print(_row(lab, r))
    print(f"(2D-2 total {time.perf_counter() - t_all:.0f} s; rows after the first start from the "
          f"previous row's saturated flow)" if not args.no_sequencing else "", flush=True)
    if args.steady_resolutions:
        print(f"Schäfer–Turek 2D-1 (Re=20); reference cD {CD_2D1_REF}, cL 0.0106")
        for d in args.steady_resolutions:
            r = schafer_turek(d, 20.0, spinup_convective=20.0, compile=comp)
            print(f"   curved D={d}: cD={r.cd_mean:.4f} ({100 * (r.cd_mean / CD_2D1_REF - 1):+.2f}%)"
                  f" cL={r.cl_mean:.4f} steps={r.steps} time={r.runtime_s:.1f}s", flush=True)


if __name__ == "__main__":
    main()
