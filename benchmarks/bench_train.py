"""Train coarse then fine on a built-in store within a time budget; evaluate both.

    python benchmarks/bench_train.py                 # 40k samples, 112x112 input, CPU-sized schedule
    python benchmarks/bench_train.py --samples 400000 --input-size 224 --coarse-steps 20000 --fine-steps 10000
    python benchmarks/bench_train.py --samples 400000 --input-size 224 --batch 128 --lr-scaling sqrt \
        --coarse-samples 2000000 --fine-samples 1500000      # the paper's schedule, in samples

Generates the store if missing (built-in assets, 100 x 100), trains the
coarse stage, then the fine stage from it (coarse fixed), then evaluates both
on the held-out backgrounds next to the constant predictor. Prints the table
and wall times; results in ``benchmarks/results/train.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import RESULTS, ROOT, save
from engine.compose.generate import generate
from engine.config import GenerateConfig, RunOptions
from engine.learn.evaluate import evaluate_checkpoint
from engine.learn.train import TrainConfig, train
from engine.store.zarr_store import inspect_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=ROOT / "benchmarks" / "scratch" / "train40k.zarr")
    ap.add_argument("--samples", type=int, default=40_000)
    ap.add_argument("--input-size", type=int, default=112)
    ap.add_argument("--coarse-steps", type=int, default=2000)
    ap.add_argument("--fine-steps", type=int, default=1200)
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--eval-every", type=int, default=500, help="validation (on the whole held-out split) every N steps")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "scratch" / "run40k")
    ap.add_argument("--loader", default="dali", choices=["dali", "torch"], help="training input (see train --loader)")
    ap.add_argument("--batch", type=int, default=32, help="samples per step (train --batch)")
    ap.add_argument("--lr-scaling", default="none", choices=["linear", "sqrt", "none"], help="train --lr-scaling")
    ap.add_argument("--coarse-samples", type=int, help="coarse schedule in samples: steps = ceil(samples / batch)")
    ap.add_argument("--fine-samples", type=int, help="fine schedule in samples: steps = ceil(samples / batch)")
    ap.add_argument("--cuda-graphs", action="store_true", help="train --cuda-graphs")
    ap.add_argument("--compile", action="store_true", help="train --compile")
    ap.add_argument("--cache", default="none", choices=["none", "device"], help="train --cache")
    ap.add_argument("--eval-samples", type=int, default=2000, help="periodic validation subset (train --eval-samples)")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()

    if not (args.store.exists() and inspect_store(args.store).complete):
        t0 = time.perf_counter()
        generate(GenerateConfig(limit=args.samples), args.store, RunOptions(overwrite=True, device="auto"))
        print(f"store: {args.samples} samples in {time.perf_counter() - t0:.0f} s")
    common = dict(data=str(args.store), out=str(args.out), height=args.input_size, width=args.input_size, loader=args.loader,
                  optimizer=args.optimizer, eval_every=args.eval_every, checkpoint_every=args.eval_every,
                  batch=args.batch, lr_scaling=args.lr_scaling, cuda_graphs=args.cuda_graphs, compile=args.compile,
                  cache=args.cache, eval_samples=args.eval_samples)
    results: dict[str, object] = {"samples": args.samples, "input_size": args.input_size, "loader": args.loader,
                                  "batch": args.batch, "lr_scaling": args.lr_scaling, "cuda_graphs": args.cuda_graphs,
                                  "compile": args.compile, "cache": args.cache}
    t_all = time.perf_counter()
    schedule = (("coarse", args.coarse_steps, args.coarse_samples), ("fine", args.fine_steps, args.fine_samples))
    for stage, steps, samples in schedule:
        steps = -(-samples // args.batch) if samples else steps  # the same samples at any batch
        extra = {"init": str(args.out / "coarse.pt")} if stage == "fine" else {}
        report = train(TrainConfig(stage=stage, steps=steps, **common, **extra), plot=True, overwrite=True)
        results[stage] = {"steps": steps, "samples": steps * args.batch, "seconds": report.seconds,
                          "images_per_s": report.images_per_second}
        print(f"{stage}: {steps} steps of {args.batch} in {report.seconds:.0f} s ({report.images_per_second:.0f} images/s)",
              flush=True)
    results["train_seconds_both_stages"] = time.perf_counter() - t_all
    for stage in ("coarse", "fine"):
        result = evaluate_checkpoint(args.out / f"{stage}.pt", args.store, "val", loader=args.loader)
        results[f"{stage}_val"] = result
        m, c = result["metrics"]["model"], result["metrics"]["constant"]
        print(f"\n{stage} on {result['samples']} held-out samples")
        for k in m:
            print(f"  {k:10s} model {m[k]:9.4f}   constant {c[k]:9.4f}")
    print(f"\nboth stages: {results['train_seconds_both_stages']:.0f} s")
    save("train", results, args.results_dir)


if __name__ == "__main__":
    main()
