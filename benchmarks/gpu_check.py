"""Ready for the GPU (issue #16): one table of the figures that decide how the full preset runs.

    python benchmarks/gpu_check.py                    # a GPU node: the full preset, < 8 min on an H200
    python benchmarks/gpu_check.py --quick --data results/data/channel_demo   # CPU: demo sizes, < 3 min

Rows (every ratio is against a figure measured in the same run):

* ``train``: the preset's baseline run (round A's ``baseline`` run spec, with its planned
  micro-batch) at the curriculum's last stage (largest horizon, bottom blocks frozen): fp32
  eager, bf16 autocast, bf16 + torch.compile -- ms/step, tokens/s, achieved TFLOP/s and MFU
  (FLOPs of one step counted with ``torch.utils.flop_counter.FlopCounterMode`` in the eager
  model; peak from ``DEVICE_SPECS``, printed in the header; n/a on CPU), peak memory measured
  (``physweep.train.telemetry.measure_step_memory``) against the plan's prediction
  (``physweep.plan.memory``), and J/step from NVML (RAPL on CPU) over the whole timed window.
* ``rollout``: the evaluation's ensemble rollout (``rollout_ensemble``) at the preset's small
  suite (members, horizon, points) on one trajectory: s/step without the corrector (the same
  member batch, and one member) and with it; the tax is with / without.
* ``lbm``: the dataset's solver (float32, compiled, curved obstacles, characteristic outlet) on
  the preset's lattice at its data batch and at a 4x larger batch: MLUPS and the fraction of the
  memory-bandwidth bound (D2Q9 in float32 moves at least 9 populations in and 9 out per lattice
  update: 72 bytes; the bound is peak bandwidth / 72 B).
* ``round``: a three-run mini round (tiny data, 30 steps) through Snakemake with
  ``--resources gpu=<GPUs>``, every training / eval job pinned to a free GPU by
  ``physweep.train.gpu_slots``: wall time and the jobs that took a GPU slot. Skipped with
  ``--quick`` (its ~25 jobs need ~5 minutes on 2 CPU cores).

Data: ``--data DIR`` reads DIR/train.nc and DIR/test.nc; without it a synthetic split of the
real structure is made in memory at the preset's grid (``physics.flowsplit.synthetic_split``:
128 x 256 for the full preset) -- the full dataset takes GPU-hours to generate, and only shapes
matter for these figures. ``--json PATH`` writes the rows.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from physweep.plan.config import REPO_ROOT, load_workflow_config
from physweep.plan.memory import GIB, parameter_counts, training_memory
from physweep.plan.round import plan_round
from physweep.plan.spec import build_spec, memory_section, template

#: dense peak throughput (TFLOP/s; bf16 tensor cores, fp32 without tensor cores -- PyTorch keeps
#: TF32 off for matmuls by default) and memory bandwidth (TB/s), from the vendors' datasheets.
#: Matched against torch.cuda.get_device_name() in this order (first hit).
DEVICE_SPECS = [
    (r"H200", {"bf16": 989.0, "fp32": 67.0, "tb_s": 4.8}),
    (r"H100.*PCIe", {"bf16": 756.0, "fp32": 51.0, "tb_s": 2.0}),
    (r"H100.*NVL", {"bf16": 835.0, "fp32": 60.0, "tb_s": 3.9}),
    (r"H100", {"bf16": 989.0, "fp32": 67.0, "tb_s": 3.35}),
    (r"A100.*80GB.*PCIe|A100 80GB PCIe", {"bf16": 312.0, "fp32": 19.5, "tb_s": 1.935}),
    (r"A100.*80GB", {"bf16": 312.0, "fp32": 19.5, "tb_s": 2.039}),
    (r"A100", {"bf16": 312.0, "fp32": 19.5, "tb_s": 1.555}),
    (r"L40S", {"bf16": 362.0, "fp32": 91.6, "tb_s": 0.864}),
    (r"\bL4\b", {"bf16": 121.0, "fp32": 30.3, "tb_s": 0.3}),
    (r"\bA10\b", {"bf16": 125.0, "fp32": 31.2, "tb_s": 0.6}),
]
LBM_BYTES_PER_UPDATE = 2 * 9 * 4  # D2Q9 float32: 9 populations read + 9 written


def device_spec(name: str) -> dict[str, float] | None:
    for pattern, spec in DEVICE_SPECS:
        if re.search(pattern, name):
            return spec
    return None


class Table:
    """Rows of (section, case, value, unit, ratio, note), printed as one table."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, section: str, case: str, value: float | str | None, unit: str = "",
            ratio: str = "", note: str = "") -> None:
        row = {"section": section, "case": case, "value": value, "unit": unit, "ratio": ratio,
               "note": note}
        self.rows.append(row)
        print(f"  [{section}] {case}: {_fmt(value)} {unit} {ratio} {note}".rstrip(), flush=True)

    def render(self, title: str) -> str:
        head = ("section", "case", "value", "unit", "ratio", "note")
        cells = [[r["section"], r["case"], _fmt(r["value"]), r["unit"], r["ratio"], r["note"]]
                 for r in self.rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
        widths[-1] = len(head[-1])  # the note runs on
        lines = [title, "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
                 "  ".join("-" * w for w in widths)]
        for c in cells:
            lines.append("  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1]),
                                    c[2].rjust(widths[2]), c[3].ljust(widths[3]),
                                    c[4].ljust(widths[4]), c[5]]).rstrip())
        return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if not math.isfinite(v):
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ---------------------------------------------------------------------------- set-up
def baseline_spec(preset: str) -> tuple[dict, object]:
    """Round A's baseline run spec at ``preset`` (the micro-batch the plan fits to the device)."""
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    config["preset"] = preset
    wcfg = load_workflow_config(config, REPO_ROOT)
    plan = plan_round(wcfg, "round_a")
    spec = build_spec(template(wcfg, plan, plan.run("baseline")))
    return spec, wcfg


def load_splits(args, wcfg, n_time: int):
    from physweep.physics.dataset import load_split
    from physweep.physics.flowsplit import synthetic_split

    if args.data:
        d = Path(args.data)
        return load_split(d / "train.nc"), load_split(d / "test.nc"), f"data {d}"
    ny, nx = memory_section(wcfg.preset)["grid"]
    train = synthetic_split(4, n_time, ny, nx, seed=0)
    test = synthetic_split(1, n_time, ny, nx, seed=1)
    return train, test, f"synthetic {ny}x{nx} split (physics.flowsplit.synthetic_split)"


# ---------------------------------------------------------------------------- training
def step_flops(trainer) -> float:
    """FLOPs of one training step (forward + backward of every micro-batch), eager model."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def fwd(q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(q, k, v)

    def bwd(g, q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_backward_flop_count(g, q, k, v)

    custom = {}  # the CPU flash-attention kernels are not in the counter's registry
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        custom[aten._scaled_dot_product_flash_attention_for_cpu] = fwd
        custom[aten._scaled_dot_product_flash_attention_for_cpu_backward] = bwd
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        trainer.train_step()
    return float(counter.get_total_flops())


def check_training(args, table: Table, spec: dict, split, dev: torch.device, spec_hw) -> None:
    from physweep.train.loop import Trainer
    from physweep.train.telemetry import EnergyMeter, measure_step_memory

    mem = spec["memory"]
    grid = split.grid_shape
    tokens = spec["train"]["batch_tokens"]
    modes = [("fp32 eager", "fp32", False), ("bf16 autocast", "bf16", False),
             ("bf16 + torch.compile", "bf16", True)]
    flops = None
    ref_ms = None
    for label, precision, comp in modes:
        if precision == "bf16" and dev.type != "cuda":
            table.add("train", label, None, note="bf16 autocast is CUDA-only in the trainer "
                      "(TrainConfig.precision; CPU trains fp32)")
            continue
        if comp and dev.type != "cuda" and args.quick:
            table.add("train", label, None, note="skipped under --quick on CPU")
            continue
        train = dict(spec["train"], precision=precision, compile=comp, device=dev.type,
                     log_every=10**9, threads=args.threads)
        run_spec = dict(spec, train=train)
        pred = training_memory(run_spec["model"], train, grid, run_spec["corrector"]["steps"],
                               split.n_time, device=dev.type)
        if dev.type == "cuda":
            total = torch.cuda.get_device_properties(dev).total_memory
            if pred.total > 0.95 * total:
                table.add("train", label, None, note=f"skipped: predicted {pred.gib:.1f} GiB > "
                          f"{0.95 * total / GIB:.1f} GiB of the device")
                continue
        trainer = None
        try:
            torch.manual_seed(0)
            trainer = Trainer(run_spec, split)
            n_timed = args.steps
            trainer.train_step()  # stage 0 (horizon 1, nothing frozen): every AdamW state
            # then the curriculum's last stage: the largest horizon, the bottom blocks frozen
            stages = trainer.curriculum.stages
            trainer.step = (stages - 1) * trainer.total_steps // stages + 1
            t0 = time.perf_counter()
            for _ in range(3 if comp else 1):  # warm-up (compilation, allocator, kernels)
                trainer.train_step()
            warm_s = time.perf_counter() - t0
            memory = measure_step_memory(trainer)
            if flops is None and not comp:
                flops = step_flops(trainer)
            meter = EnergyMeter(dev)
            _sync(dev)
            e0, t0 = meter.read_joules(), time.perf_counter()
            times = []
            while len(times) < n_timed or (time.perf_counter() - t0 < args.min_window_s
                                           and len(times) < 20 * n_timed):
                times.append(trainer.train_step()["step_time_s"])
            _sync(dev)
            window = time.perf_counter() - t0
            e1 = meter.read_joules()
        except torch.cuda.OutOfMemoryError as exc:
            table.add("train", label, None, note=f"out of memory (predicted {pred.gib:.1f} "
                      f"GiB): {str(exc)[:80]}")
            trainer = None
            gc.collect()
            torch.cuda.empty_cache()
            continue
        ms = 1e3 * sorted(times)[len(times) // 2]
        ref_ms = ref_ms or ms
        h = trainer.horizon()
        table.add("train", f"{label}: step", ms, "ms", f"x{ref_ms / ms:.2f} vs fp32",
                  f"{trainer.cfg.samples_per_step} samples x {trainer.cfg.points_per_sample} "
                  f"points, micro_batch {trainer.cfg.micro_batch}, horizon {h}, median of "
                  f"{len(times)} steps" + (f"; warm-up with compilation {warm_s:.0f} s"
                                           if comp else ""))
        table.add("train", f"{label}: tokens/s", tokens / (ms / 1e3), "tok/s")
        tflops = flops / (ms / 1e3) / 1e12 if flops else None
        peak = spec_hw.get("bf16" if precision == "bf16" else "fp32") if spec_hw else None
        table.add("train", f"{label}: achieved", tflops, "TFLOP/s", "",
                  f"{flops / 1e12:.2f} TFLOP/step (FlopCounterMode, eager)" if flops else "")
        table.add("train", f"{label}: MFU", 100 * tflops / peak if tflops and peak else None,
                  "%", "", f"of {peak:g} TFLOP/s {precision} peak" if peak
                  else "n/a: no peak for this device (CPU or not in DEVICE_SPECS)")
        ratio = pred.total / memory["total"]
        table.add("train", f"{label}: peak memory", memory["total"] / GIB, "GiB",
                  f"pred/meas {ratio:.2f}",
                  f"predicted {pred.gib:.2f} GiB ({pred.precision}"
                  + (", compile predicted as eager" if comp else "") + f"); plan: "
                  f"{mem['predicted_gib']:.1f} GiB at micro_batch {mem['micro_batch']}")
        joules = (e1 - e0) / len(times) if e0 is not None and e1 is not None else None
        table.add("train", f"{label}: energy", joules, "J/step", "",
                  f"{meter.source} over {len(times)} steps, {window:.1f} s" if joules
                  else f"not measured ({meter.source}: {meter.error or 'no counter'})")
        del trainer
        if dev.type == "cuda":
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------- rollout
def check_rollout(args, table: Table, spec: dict, wcfg, split, dev: torch.device) -> None:
    import dataclasses

    from physweep.configs import from_dict
    from physweep.evaluate.rollout import rollout_ensemble
    from physweep.model.corrector import CorrectorConfig, build_denoiser
    from physweep.model.surrogate import Surrogate, SurrogateConfig
    from physweep.physics.gates import grid_info
    from physweep.train.loop import field_statistics

    suite = wcfg.preset["eval"]["small"]
    horizon = min(suite["horizon"], split.n_time - 2)
    members, points = suite["ensemble_members"], suite["points"]
    torch.manual_seed(0)
    model = Surrogate(from_dict(SurrogateConfig, spec["model"]))
    mean, std = field_statistics(split)
    coords = split.coords.reshape(-1, 2)
    model.set_statistics(mean, std, coords.min(0).values, coords.max(0).values)
    ccfg = from_dict(CorrectorConfig, spec["corrector"])
    den = build_denoiser(model, ccfg)
    grid = grid_info(split)
    weight = float(spec["train"]["projection_weight"])

    def run(cfg, m, batch):
        gen = torch.Generator().manual_seed(0)
        return rollout_ensemble(model, den, cfg, split, [0], 1, horizon, points, gen, m, weight,
                                grid, device=dev, batch_members=batch).s_per_step

    plain = dataclasses.replace(ccfg, steps=0)
    run(ccfg, members, False)  # warm-up: kernels, allocator
    one = run(plain, 1, False)
    batch = run(plain, members, True)
    corr = run(ccfg, members, False)
    n_fire = sum(ccfg.fires(t) for t in range(1, horizon + 1))
    what = (f"{members} members, horizon {horizon}, {points} points, grid "
            f"{split.grid_shape[0]}x{split.grid_shape[1]}")
    table.add("rollout", "plain, 1 member", one, "s/step", "", what)
    table.add("rollout", f"plain, {members} members batched", batch, "s/step",
              f"x{batch / one:.2f} vs 1 member")
    table.add("rollout", "with corrector", corr, "s/step", f"tax x{corr / batch:.2f}",
              f"cadence {ccfg.cadence}, steps {ccfg.steps}, guidance {ccfg.guidance}: fires "
              f"{n_fire}x in {horizon} steps; tax against the same member batch")


# ---------------------------------------------------------------------------- LBM
def check_lbm(args, table: Table, wcfg, dev: torch.device, spec_hw) -> None:
    from physweep.configs import from_dict
    from physweep.physics.dataset_config import DatasetConfig
    from physweep.physics.lbm import LBMSolver, disk_link_fractions, disk_mask, parabolic_profile

    data = from_dict(DatasetConfig, dict(wcfg.preset["data"]))
    ny, nx = round(data.ny * data.refine), round(data.nx * data.refine)
    d = 0.3 * ny
    solid = disk_mask(ny, nx, 0.25 * nx, 0.5 * ny + 0.5, 0.5 * d)
    wall_q = disk_link_fractions(ny, nx, 0.25 * nx, 0.5 * ny + 0.5, 0.5 * d, solid)
    u = data.u_lat_max
    tau = 0.5 + 3.0 * u * d / 150.0
    bound = spec_hw["tb_s"] * 1e12 / LBM_BYTES_PER_UPDATE / 1e6 if spec_hw else None
    steps = args.lbm_steps
    ref = None
    for batch in (data.batch_size, 4 * data.batch_size):
        s = LBMSolver(solid.expand(batch, ny, nx), tau, parabolic_profile(ny, u).expand(batch, ny),
                      x_mode="open", dtype=torch.float32, device=dev, compile=data.compile,
                      incompressible=data.incompressible, outlet=data.outlet, wall_q=wall_q)
        s.initialize()
        t0 = time.perf_counter()
        s.step(10)  # warm-up (compilation)
        _sync(dev)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        s.step(steps)
        _sync(dev)
        dt = time.perf_counter() - t0
        mlups = batch * ny * nx * steps / dt / 1e6
        ref = ref or mlups
        frac = f"{100 * mlups / bound:.1f} % of bound" if bound else "bound n/a"
        table.add("lbm", f"batch {batch} on {ny}x{nx}", mlups, "MLUPS",
                  frac if batch == data.batch_size else f"{frac}; x{mlups / ref:.2f}",
                  f"{steps} steps after warm-up ({warm:.0f} s incl. compile={data.compile}); "
                  f"{LBM_BYTES_PER_UPDATE} B/update"
                  + (f", bound {bound:,.0f} MLUPS at {spec_hw['tb_s']} TB/s" if bound else ""))
        del s


# ---------------------------------------------------------------------------- mini round
def _tiny_workspace(work: Path, use_gpu: bool) -> Path:
    preset = yaml.safe_load((REPO_ROOT / "config" / "presets" / "demo.yaml").read_text())
    preset["sizes"]["budget_steps"] = {"scale": 0.0015, "multiple": 1}  # 20000 -> 30 steps
    preset["sizes"]["batch_tokens"] = {"scale": 0.0078125, "multiple": 128}  # 4 x 128 points
    preset["data"] = {"name": "channel_tiny", "n_train": 6, "n_test": 2, "n_ood": 2,
                      "n_snapshots": 12, "spinup_steps": 1500, "batch_size": 10, "refine": 1,
                      "compile": False}
    preset["train"]["points_per_sample"] = 128
    for suite in preset["eval"].values():
        suite.update(points=128, ensemble_members=2, horizon=4, long_horizon_from=3)
    preset["eval"]["small"]["n_traj"] = 2
    preset["eval"]["full"]["horizon"] = 8
    preset["reference"]["steps"] = 10
    for kind in ("train", "eval"):
        preset["resources"][kind]["gpu"] = 1 if use_gpu else 0
    (work / "presets").mkdir(parents=True)
    (work / "rounds").mkdir()
    (work / "presets" / "tiny.yaml").write_text(yaml.safe_dump(preset))
    # the baseline (lr 3e-4) is the grid's first run: three runs in all with one more seed
    (work / "rounds" / "round_g.yaml").write_text(yaml.safe_dump({
        "name": "round_g", "title": "GPU-check mini round", "objective": "nrmse",
        "fixed": {"ema": 0.999},
        "blocks": [{"name": "optimizer", "design": {"type": "grid"},
                    "knobs": {"lr": [3.0e-4, 4.5e-4]}}]}))
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    config.update(preset="tiny", presets_dir=str(work / "presets"),
                  rounds_dir=str(work / "rounds"))
    config["early_stop"].update(baseline_seeds=2, bootstrap_samples=200)
    config["promotion"]["k"] = 1
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    return work / "config.yaml"


def check_round(args, table: Table, dev: torch.device) -> None:
    from physweep.train.gpu_slots import gpu_count

    if args.quick:
        table.add("round", "3-run mini round", None, note="skipped under --quick (~25 jobs: "
                  "~5 min on 2 CPU cores); tests/workflow/test_round_end_to_end.py runs one")
        return
    n_gpu = gpu_count() if dev.type == "cuda" else 0
    if dev.type == "cuda":
        torch.cuda.empty_cache()  # leave the device to the round's jobs
    work = Path(tempfile.mkdtemp(prefix="physweep-gpu-check-"))
    try:
        cfg = _tiny_workspace(work, n_gpu > 0)
        snakemake = str(Path(sys.executable).parent / "snakemake")
        cmd = [snakemake, "round_g", "-s", str(REPO_ROOT / "Snakefile"), "--configfile",
               str(cfg), "--cores", str(max(2, os.cpu_count() or 2)),
               "--resources", f"gpu={n_gpu}"]
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        env["PHYSWEEP_GPU_LOCK_DIR"] = str(work / "gpu-locks")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env,
                                  timeout=args.round_timeout_s)
            ok = proc.returncode == 0
            tail = (proc.stderr or "")[-300:].replace("\n", " ")
        except subprocess.TimeoutExpired:
            ok, tail = False, f"timed out after {args.round_timeout_s} s"
        wall = time.perf_counter() - t0
        logs = list((work / "results" / "logs").rglob("*.log"))
        slots = [p for p in logs if "GPU slot" in p.read_text(errors="replace")
                 and "CUDA_VISIBLE_DEVICES=" in p.read_text(errors="replace")]
        runs = sorted(p.name for p in (work / "results" / "round_g" / "runs").glob("*"))
        table.add("round", "3-run mini round", wall if ok else None, "s",
                  f"{len(slots)} of {len(logs)} job logs took a GPU slot",
                  f"runs {', '.join(runs)}; --resources gpu={n_gpu}; tiny data, 30 steps"
                  + ("" if ok else f"; FAILED: {tail}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="demo preset sizes (CPU: < 3 min)")
    ap.add_argument("--data", default=None, help="dataset dir (train.nc, test.nc); default: "
                    "a synthetic split at the preset's grid")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per mode")
    ap.add_argument("--min-window-s", type=float, default=None,
                    help="shortest timed window per mode (energy counters tick every ~0.1 s)")
    ap.add_argument("--lbm-steps", type=int, default=None)
    ap.add_argument("--round-timeout-s", type=int, default=240)
    ap.add_argument("--sections", default="train,rollout,lbm,round")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 0))
                    or min(8, os.cpu_count() or 1))
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                       else "cpu" if args.device == "auto" else args.device)
    gpu = dev.type == "cuda"
    args.steps = args.steps or (8 if gpu else 3)
    args.min_window_s = args.min_window_s if args.min_window_s is not None else (10.0 if gpu
                                                                                else 0.0)
    args.lbm_steps = args.lbm_steps or (200 if gpu else 40)
    preset = "demo" if args.quick else "full"
    t_all = time.perf_counter()
    spec, wcfg = baseline_spec(preset)
    suite_h = wcfg.preset["eval"]["small"]["horizon"]
    train_h = spec["memory"]["horizon"]
    n_time = max(train_h, suite_h) + 3
    split, test, source = load_splits(args, wcfg, n_time)
    name = torch.cuda.get_device_name(dev) if gpu else "CPU"
    hw = device_spec(name) if gpu else None
    from physweep.train.telemetry import hardware_description

    peaks = (f"peak bf16 {hw['bf16']:g} / fp32 {hw['fp32']:g} TFLOP/s, {hw['tb_s']:g} TB/s "
             "(DEVICE_SPECS)" if hw else "no peak figures: MFU and bandwidth fraction n/a")
    print(f"physweep GPU check: {hardware_description(dev)}; preset {preset}; {source}; "
          f"{peaks}; torch {torch.__version__}, {args.threads} threads", flush=True)
    table = Table()
    sections = set(args.sections.split(","))
    if "train" in sections:
        check_training(args, table, spec, split, dev, hw)
    if "rollout" in sections:
        check_rollout(args, table, spec, wcfg, test, dev)
    if "lbm" in sections:
        check_lbm(args, table, wcfg, dev, hw)
    if "round" in sections:
        check_round(args, table, dev)
    n_par = sum(parameter_counts(spec["model"], spec["corrector"]["steps"])[k]
                for k in ("surrogate", "denoiser"))
    title = (f"\n=== physweep GPU check: {name}, preset {preset} ({n_par / 1e6:.1f} M "
             f"parameters: model_dim {spec['model']['model_dim']}, depth {spec['model']['depth']}, "
             f"{spec['model']['latent_tokens']} latent tokens), {time.perf_counter() - t_all:.0f} s "
             f"in all; {peaks} ===")
    print(table.render(title), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "preset": preset,
                                               "rows": copy.deepcopy(table.rows)}, indent=1))


if __name__ == "__main__":
    main()
