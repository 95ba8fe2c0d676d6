"""Scaling out: ``generate`` and ``train`` on 1 rank vs K ranks (torchrun), per rank and together.

Runs the real commands (``cli.py generate`` / ``cli.py train``, under
``python -m torch.distributed.run --nproc-per-node K`` for K > 1) and reads
their summary lines: the writing phase's images/s of every rank and of all
together (the slowest rank sets the time), the stage that limits rank 0
(``generate -v``), and training images/s per rank and together. Checks that
the K-rank store is byte-identical to the 1-rank one.

    python benchmarks/bench_ranks.py                       # 4,000 samples at 112, 1 vs 2 ranks, CPU
    python benchmarks/bench_ranks.py --samples 400000 --size 224 --assets 100 --ranks 8 --device cuda \
        --batch 256 --loader dali --train-steps 200                                         # 8 GPUs
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from common import ROOT, save, scratch

CLI = str(ROOT / "cli.py")


def launch(nproc: int, args: list[str], port: int, threads: int) -> str:
    """Run ``cli.py ARGS`` on ``nproc`` ranks, ``threads`` torch threads each
    (torchrun's default is 1; one rank gets the same, for a like-for-like
    comparison); its stdout + stderr."""
    cmd = [sys.executable, CLI, *args] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", str(port), CLI, *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def generate_once(nproc: int, out: Path, args: argparse.Namespace, port: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    text = launch(nproc, ["generate", "--out", str(out), "--size", str(args.size), "--limit", str(args.samples),
                          "--builtin-backgrounds", str(args.assets), "--builtin-foregrounds", str(args.assets), "--shard-size", str(args.shard_size),
                          "--device", args.device, "-q", "-v"], port, args.threads)
    rates = [float(m.replace(",", "")) for m in re.findall(r"rank \d+: [\d,]+ samples in [\d.]+ s \(([\d,]+) images/s\)", text)]
    if nproc == 1:
        rates = [float(re.search(r"\(([\d,]+) images/s writing", text).group(1).replace(",", ""))]  # type: ignore[union-attr]
        together = rates[0]
    else:
        together = float(re.search(r"ranks together: .*?\(([\d,]+) images/s", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    limit = re.search(r"^\s+((?:compositing|writers|host tables) limit.*)$", text, re.M)
    return {"per_rank": rates, "together": together, "limit": limit.group(1) if limit else ""}


def train_once(nproc: int, store: Path, out: Path, args: argparse.Namespace, port: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    text = launch(nproc, ["train", "--data", str(store), "--out", str(out), "--steps", str(args.train_steps),
                          "--batch", str(args.batch), "--loader", args.loader, "--eval-every", "100000", "--device", args.device, "-q"], port,
                  args.threads)
    if nproc == 1:
        rate = float(re.search(r"steps in \d+ s \(([\d.]+) images/s\)", text).group(1))  # type: ignore[union-attr]
        return {"per_rank": [rate], "together": rate}
    m = re.search(r"ranks: ([\d, ]+) images/s each, ([\d.]+) images/s together", text)
    return {"per_rank": [float(v) for v in m.group(1).split(",")], "together": float(m.group(2))}  # type: ignore[union-attr]


def same_files(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    if files != sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()):
        return False
    return all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)


def median_run(runs: list[dict]) -> dict:
    """The run whose aggregate rate is the median (its per-rank figures and limit with it)."""
    ordered = sorted(runs, key=lambda r: r["together"])
    pick = ordered[len(ordered) // 2]
    return {**pick, "together_all": [r["together"] for r in runs], "together_median": statistics.median(
        r["together"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--assets", type=int, default=20, help="built-in backgrounds and foregrounds (N x N x 40 samples at most)")
    parser.add_argument("--batch", type=int, default=32, help="global training batch")
    parser.add_argument("--loader", default="torch", help="training loader: torch or dali")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=20, help="0: skip training")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every rank (torchrun's default)")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args()
    work = scratch("ranks")
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"samples": args.samples, "size": args.size, "ranks": args.ranks, "device": args.device,
                     "threads_per_rank": args.threads}
    for nproc in (1, args.ranks):
        runs = [generate_once(nproc, work / f"gen{nproc}.zarr", args, 29600 + 10 * nproc + i) for i in range(args.repeats)]
        results[f"generate_{nproc}"] = median_run(runs)
    results["byte_identical"] = same_files(work / "gen1.zarr", work / f"gen{args.ranks}.zarr")
    if args.train_steps:
        for nproc in (1, args.ranks):
            runs = [train_once(nproc, work / "gen1.zarr", work / f"run{nproc}", args, 29700 + 10 * nproc + i)
                    for i in range(args.repeats)]
            results[f"train_{nproc}"] = median_run(runs)
    print(f"{args.samples:,} samples at {args.size}, {args.device}, median of {args.repeats}:")
    for what in ("generate", "train"):
        for nproc in (1, args.ranks):
            r = results.get(f"{what}_{nproc}")
            if r:
                each = ", ".join(f"{v:,.0f}" for v in r["per_rank"])
                print(f"  {what:8s} {nproc} rank(s): {r['together_median']:8,.0f} images/s together (each: {each})"
                      + (f"; rank 0: {r['limit']}" if r.get("limit") else ""))
    print(f"  {args.ranks}-rank store byte-identical to the 1-rank store: {results['byte_identical']}")
    print(f"results: {save('ranks', results, *(() if args.results_dir is None else (args.results_dir,)))}")


if __name__ == "__main__":
    main()
