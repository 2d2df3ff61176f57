"""How far the UPT surrogate gets against its baselines, as a function of training steps.

Trains round A's baseline run (the planner's spec at the active preset) and the reference U-Net
(the preset's ``reference`` section) for each of ``--steps`` optimizer steps on the same data,
evaluates both with the preset's small suite (the same samples), and prints per step count:
nRMSE, ÷ persistence, ÷ reference, and for the surrogate the *latent reliance* -- the lead-1
error when every sample decodes another sample's latent, over the error with its own latent
(1.0 = the prediction ignores the latent; the start-context path alone carries it).

    .venv/bin/python benchmarks/surrogate_learning.py --steps 250 600 --threads 2

Data: ``--data DIR`` (train.nc / test.nc); by default the demo dataset in
results/data/channel_demo (``make demo`` writes it; generated here when missing, ~90 s).
Each UPT run at the demo preset takes about 100 s per 500 steps on 2 cores, the U-Net about
45 s. Measured (demo data, 2 threads; persistence 0.652): UPT 0.374 / 0.324 / 0.293 at 500 /
1,000 / 2,000 steps, U-Net 0.211 / 0.177 / 0.155 (1.78 / 1.84 / 1.89 x), latent reliance 1.02 /
1.13 / 1.43.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
import yaml

from physweep.configs import from_dict
from physweep.evaluate.suite import EvalSuite, evaluate_checkpoint
from physweep.model.surrogate import load_model
from physweep.physics.dataset import DatasetConfig, generate_dataset, load_split, sample_points
from physweep.plan.config import REPO_ROOT, load_workflow_config
from physweep.plan.round import plan_round
from physweep.plan.spec import build_spec, template
from physweep.train.loop import train_run
from physweep.train.reference import reference_spec

DEMO_DATA = REPO_ROOT / "results" / "data" / "channel_demo"


def surrogate_spec(wcfg, steps: int) -> dict:
    plan = plan_round(wcfg, "round_a")
    spec = build_spec(template(wcfg, plan, plan.run("baseline")))
    spec["train"]["budget_tokens"] = steps * spec["train"]["batch_tokens"]
    return spec


def latent_reliance(checkpoint: Path, split, starts=(5, 15, 25, 35), seed: int = 0) -> float:
    """Lead-1 error (grid, fluid cells, normalised units) with each sample's latent replaced by
    another sample's, over the error with its own latent."""
    model, spec = load_model(checkpoint)
    g = torch.Generator().manual_seed(seed)
    c = split.fields.shape[2]
    points = int(spec["train"]["points_per_sample"])
    pos, vals, s0, s1, mask = [], [], [], [], []
    for i in range(split.fields.shape[0]):
        flat = split.fields[i].reshape(split.n_time, c, -1)
        for t0 in (t for t in starts if t + 1 < split.n_time):
            idx = sample_points(split.mask[i], points, g)
            pos.append(split.coords.reshape(-1, 2)[idx])
            vals.append(flat[t0][:, idx].T)
            s0.append(flat[t0].T)
            s1.append(flat[t0 + 1].T)
            mask.append(split.mask[i].reshape(-1, 1).float())
    pos, vals, s0, s1, mask = map(torch.stack, (pos, vals, s0, s1, mask))
    n0, n1 = model.normalize(s0), model.normalize(s1)
    query = split.coords.reshape(1, -1, 2).expand(pos.shape[0], -1, -1)
    with torch.no_grad():
        z0, anchor, context = model.start(pos, model.normalize(vals), query, anchor=n0)
        z1 = model.approximate(z0)
        other = torch.roll(torch.arange(pos.shape[0]), len(starts))  # another trajectory

        def err(z):
            return float((((model.predict(z, anchor, query, context) - n1) ** 2) * mask).sum())

        return (err(z1[other]) / err(z1)) ** 0.5


def setup(data_dir: str | None, preset: str):
    """(data directory, workflow config at ``preset``, the preset's small eval suite); the demo
    dataset is generated when the directory has none."""
    data = Path(data_dir) if data_dir else DEMO_DATA
    if not (data / "train.nc").exists():
        print(f"generating the demo dataset in {data} ...", flush=True)
        generate_dataset(DatasetConfig(), data, progress=False)
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    config["preset"] = preset
    wcfg = load_workflow_config(config, REPO_ROOT)
    small = dict(wcfg.preset["eval"]["small"], name="small", thresholds=config["gates"])
    return data, wcfg, from_dict(EvalSuite, small, where=f"preset {preset} eval.small")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[250, 600])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=None)
    ap.add_argument("--preset", default="demo")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data, wcfg, suite = setup(args.data, args.preset)
    preset = wcfg.preset
    test = load_split(data / "test.nc")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for steps in args.steps:
            ref = copy.deepcopy(dict(preset["reference"]))
            ref["steps"] = steps
            specs = {"reference": reference_spec(ref, dict(preset["train"]), data.name),
                     "surrogate": surrogate_spec(wcfg, steps)}
            evals = {}
            for kind in ("reference", "surrogate"):  # the reference first: the surrogate's
                spec = specs[kind]                    # eval reads its per-sample nRMSE
                spec["train"]["threads"] = args.threads
                out = Path(tmp) / f"{kind}_{steps}"
                out.mkdir()
                t = time.perf_counter()
                train_run(spec, data, out / "checkpoint.pt", out / "train_log.nc")
                seconds = time.perf_counter() - t
                evals[kind] = out / "small_eval.nc"
                s = evaluate_checkpoint(out / "checkpoint.pt", data, suite, evals[kind],
                                        threads=args.threads,
                                        reference=evals.get("reference") if kind == "surrogate"
                                        else None)
                row = {"model": kind, "steps": steps, "train_s": seconds, "nrmse": s["nrmse"],
                       "persistence": s["nrmse_persistence"], "linear": s["nrmse_linear"]}
                if kind == "surrogate":
                    row["reference"] = s["nrmse_reference"]
                    row["reliance"] = latent_reliance(out / "checkpoint.pt", test)
                rows.append(row)
                print(f"  {kind} {steps} steps: nRMSE {s['nrmse']:.4f} ({seconds:.0f} s)", flush=True)
    print(f"\nsmall eval ({suite.n_traj} test trajectories x {suite.starts} starts, leads "
          f"1-{suite.horizon}), preset {args.preset}, {args.threads} threads")
    print("| model | steps | train s | nRMSE | ÷ persistence | ÷ reference (same steps) "
          "| latent reliance |")
    print("|---|---|---|---|---|---|---|")
    ref_at = {r["steps"]: r["nrmse"] for r in rows if r["model"] == "reference"}
    for r in rows:
        rel = f"{r['reliance']:.3f}" if "reliance" in r else "-"
        print(f"| {r['model']} | {r['steps']} | {r['train_s']:.0f} | {r['nrmse']:.4f} | "
              f"{r['nrmse'] / r['persistence']:.3f} | {r['nrmse'] / ref_at[r['steps']]:.2f} "
              f"| {rel} |")
    print(f"persistence nRMSE {rows[0]['persistence']:.4f}, linear extrapolation "
          f"{rows[0]['linear']:.4f} (same samples)")


if __name__ == "__main__":
    main()
