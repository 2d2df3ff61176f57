"""`physweep` command line: inspect rounds before anything is spent (plan), while and after they
run (status), and propose the next one (next)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from physweep.io import load_yaml
from physweep.plan.config import REPO_ROOT, load_workflow_config
from physweep.plan.errors import ConfigError, ConfigErrors
from physweep.plan.round import known_rounds, plan_round
from physweep.plan.table import format_table, plan_records
from physweep.plan.workflow import known_winners


def _parse_overrides(items: list[str]) -> dict:
    """KEY=VALUE pairs, VALUE as YAML (3e-4 and 1e5 are numbers, as in the config files)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = load_yaml(value)
    return out


def _merge(config: dict, overrides: dict) -> dict:
    """Nested update, as Snakemake merges --config into the config file (knobs={lr: 3e-4}
    changes one knob, not the whole section)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            _merge(config[key], value)
        else:
            config[key] = value
    return config


def _needed(wcfg, name: str) -> set[str]:
    """The round and every round it inherits from, directly or not."""
    seen, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo += [i["round"] for i in (wcfg.rounds.get(n) or {}).get("inherit", [])]
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="physweep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="print a round's run table and guardrail warnings")
    p.add_argument("round", nargs="?", help="round name (default: every round)")
    p.add_argument("--configfile", default=str(REPO_ROOT / "config" / "config.yaml"))
    p.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                   help="top-level overrides, as snakemake --config (e.g. preset=full)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    sub.add_parser("rounds", help="list the rounds")
    s = sub.add_parser("status", help="where a round is: per-run state, step, loss, ETA, "
                       "failures; compute, decisions, best score")
    s.add_argument("round", help="round name")
    s.add_argument("--results", help="the results directory (default: results_dir of the config, "
                   "relative to the current directory)")
    s.add_argument("--workdir", help="Snakemake's working directory, where .snakemake is "
                   "(default: the directory the results directory is in)")
    s.add_argument("--json", action="store_true", help="print the status as JSON")
    s.add_argument("--watch", nargs="?", type=float, const=5.0, metavar="SECONDS",
                   help="redraw in place every SECONDS (default 5) until Ctrl-C")
    s.add_argument("--no-squeue", action="store_true", help="do not ask squeue for SLURM jobs")
    s.add_argument("--lines", type=int, default=10, help="log lines shown per failed job")
    n = sub.add_parser("next", help="propose the next round from a finished round's effects: "
                       "winners fixed, a narrower grid over the significant knobs")
    n.add_argument("round", help="a finished round (ranking.csv and winners.yaml written)")
    n.add_argument("--results", help="the results directory (default: results_dir of the config)")
    n.add_argument("--out", help="file to write (default: <rounds_dir>/<round>_next.yaml); the "
                   "round is named after the file")
    n.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    n.add_argument("--force", action="store_true", help="overwrite an existing file")
    for q in (s, n):
        q.add_argument("--configfile", default=str(REPO_ROOT / "config" / "config.yaml"))
        q.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                       help="top-level overrides, as snakemake --config")
    args = parser.parse_args(argv)

    configfile = getattr(args, "configfile", str(REPO_ROOT / "config" / "config.yaml"))
    failed = False
    try:
        try:
            config = load_yaml(Path(configfile).read_text())
        except OSError as exc:
            raise ConfigError(configfile, "<file>", f"cannot read: {exc.strerror}") from exc
        _merge(config, _parse_overrides(getattr(args, "config", [])))
        wcfg = load_workflow_config(config, REPO_ROOT, configfile)
        if args.command == "status":
            return _status(args, wcfg)
        if args.command == "next":
            return _next(args, wcfg)
        if args.command == "rounds":
            for name, rnd in wcfg.rounds.items():
                print(f"{name}: {rnd.get('title', '')} ({wcfg.round_files[name]})")
            for name, errs in wcfg.broken.items():
                print(f"{name}: cannot be planned: {errs.errors[0]}")
            return 0
        if args.round and args.round not in wcfg.rounds and args.round not in wcfg.broken:
            raise ConfigError(configfile, "round", f"unknown round '{args.round}'",
                              known_rounds(wcfg))
        names = [args.round] if args.round else [*wcfg.rounds, *wcfg.broken]
        for name, text in zip(wcfg.broken, wcfg.warnings, strict=True):
            if not args.round or name not in _needed(wcfg, args.round):
                print(f"physweep: warning: {text}", file=sys.stderr)
        out = []
        for name in names:
            if not args.round and name in wcfg.broken:
                failed = True
                print(f"physweep: config error:\n{wcfg.broken[name]}", file=sys.stderr)
                continue
            plan = plan_round(wcfg, name, known_winners(wcfg, name, Path.cwd())
                              if name in wcfg.rounds else None)
            out.append(plan_records(wcfg, plan) if args.json else format_table(wcfg, plan))
    except (ConfigError, ConfigErrors) as exc:
        print(f"physweep: config error:\n{exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2) if args.json else "\n\n".join(out))
    return 2 if failed else 0


def _results_and_workdir(args, wcfg) -> tuple[Path, Path]:
    """The results directory and Snakemake's working directory (where .snakemake is): with
    --results, the directory its results_dir path sits in; else the current directory."""
    configured = Path(wcfg.results_dir)
    if getattr(args, "results", None):
        results = Path(args.results).absolute()
        workdir = Path.cwd()
        n = len(configured.parts)
        if not configured.is_absolute() and results.parts[-n:] == configured.parts:
            workdir = Path(*results.parts[:-n])
    else:
        workdir = Path.cwd()
        results = configured if configured.is_absolute() else workdir / configured
    if getattr(args, "workdir", None):
        workdir = Path(args.workdir).absolute()
    return results, workdir


def _status(args, wcfg) -> int:
    from physweep.plan.sizes import effective_batch, effective_size
    from physweep.report.status import collect_status, format_status, watch

    results, workdir = _results_and_workdir(args, wcfg)
    cfg, pfile = wcfg.config, str(wcfg.preset_file)
    budget = (effective_size(wcfg.preset, "budget_steps", int(cfg["compute"]["budget_steps"]), pfile)
              * effective_batch(wcfg.preset, int(cfg["compute"]["ref_batch_tokens"]), pfile))
    plan = None
    if not (results / args.round / "plan.json").exists() and args.round in wcfg.rounds:
        # the plan rule has not written plan.json yet: the runs as the config plans them
        plan = plan_records(wcfg, plan_round(wcfg, args.round,
                                             known_winners(wcfg, args.round, workdir)))
    kwargs = dict(workdir=workdir, use_squeue=not args.no_squeue,
                  probe_fraction=float(cfg["early_stop"]["probe_fraction"]),
                  sigma_factor=float(cfg["early_stop"]["sigma_factor"]), budget_tokens=budget,
                  promotion_k=int(cfg["promotion"]["k"]), lines=args.lines, plan=plan)
    try:
        if args.json:
            print(json.dumps(collect_status(results, args.round, **kwargs), indent=2))
            return 0
        if args.watch:
            watch(lambda: format_status(collect_status(results, args.round, **kwargs)),
                  args.watch)
            return 0
        print(format_status(collect_status(results, args.round, **kwargs)))
    except FileNotFoundError as exc:
        print(f"physweep: {exc}", file=sys.stderr)
        return 1
    return 0


def _next(args, wcfg) -> int:
    from physweep.plan.config import _resolve
    from physweep.report.next_round import NotFinished, NothingToNarrow, propose_next

    results, _ = _results_and_workdir(args, wcfg)
    if args.out:
        out = Path(args.out)
    else:
        out = _resolve(wcfg.root, wcfg.config["rounds_dir"]) / f"{args.round}_next.yaml"
    if out.exists() and not args.force:
        print(f"physweep: {out} exists; --force overwrites it", file=sys.stderr)
        return 1
    try:
        prop = propose_next(wcfg, results, args.round, out.stem, alpha=args.alpha)
    except NotFinished as exc:
        print(f"physweep: {exc}", file=sys.stderr)
        return 1
    except NothingToNarrow as exc:
        print(f"{args.round}: reasoning")
        print("\n".join(f"  {line}" for line in exc.reasoning))
        print(f"physweep: {exc}; no file written", file=sys.stderr)
        return 1
    print(f"{args.round} -> {prop.name}: reasoning")
    print("\n".join(f"  {line}" for line in prop.reasoning))
    n_base = len(prop.plan.baseline)
    print(f"planned: {len(prop.plan.runs)} runs ({n_base} baseline replicates at the winner's "
          f"values + {len(prop.plan.runs) - n_base} in block narrow); fixed from "
          f"{args.round}'s winners: {', '.join(prop.inherited) or 'nothing'}")
    for w in prop.warnings:
        print(f"  warning: {w}")
    from physweep.io import write_text

    write_text(out, prop.text)
    print(f"wrote {out} (check it with `physweep plan {prop.name}`"
          + ("" if out.parent.resolve() == _resolve(wcfg.root, wcfg.config["rounds_dir"]).resolve()
             else f" once it is in {wcfg.config['rounds_dir']}/") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
