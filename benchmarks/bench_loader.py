"""Training input: each loader alone, and feeding the coarse network, in one run.

    python benchmarks/bench_loader.py                         # CPU defaults (2,000 samples, input 112)
    python benchmarks/bench_loader.py --samples 40000 --input-size 224 --steps 200   # on a GPU machine

Measured side by side, same store, same batches (``engine.learn.epochs``):

- (f) each loader alone, samples/s: the device-resident split, DALI from a
  lossless store, DALI from a JPEG store, the torch loader (``make_batch`` over
  the split in memory, and over images streamed from the store), and online
  compositing (``OnlineSamples.read`` of the same samples, composited on the
  fly, without the augmentation graph, and ``OnlineBatches``, with it);
- (a)–(d) training images/s with the coarse network (SGD step, bf16 autocast
  on a GPU, fp32 on the CPU) fed by each: (a) device-resident (the ceiling),
  (b) DALI lossless, (c) DALI JPEG, (d) the torch loader, (e) online
  compositing (``train --source online``'s ``OnlineBatches``); and the ratios to (a);
- GPU utilisation sampled by NVML every 100 ms during each (on a GPU with
  ``nvidia-ml-py``);
- (g) what each small-model overhead option buys, training images/s on
  device-resident batches (so the loader is never the limit), side by side:
  the default SGD step, fused SGD, fused SGD + CUDA-graphed step
  (``TrainStep``; on the CPU it runs eagerly and says so), fused SGD +
  ``torch.compile``, and batches of 128 and 256 (fused SGD, learning rates
  scaled linearly: ``batch_lr_factor``; with CUDA graphs too on a GPU).

``--sections overheads`` measures (g) alone (one lossless store).
Results: stdout and ``<results-dir>/loader.json``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common import RESULTS, save, scratch

SCRATCH = scratch("loader")  # emptied at the end


class GpuUtilisation:
    """NVML utilisation sampled in a thread while the block runs (median %, or None)."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = pynvml
        except Exception:  # noqa: BLE001 - no NVML: no figure
            self._nvml = None

    def __enter__(self) -> GpuUtilisation:
        if self._nvml is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    @property
    def median(self) -> float | None:
        return float(statistics.median(self.samples)) if self.samples else None


def rate(batches: Iterator[tuple], n_batches: int, step: Callable[[tuple], None] | None, sync: Callable[[], None],
         warmup: int = 2) -> dict[str, Any]:
    """Samples/s over ``n_batches`` (after ``warmup`` batches), with ``step`` run on each when given."""
    for _ in range(warmup):
        b = next(batches)
        if step:
            step(b)
    sync()
    seen = 0
    with GpuUtilisation() as util:
        t0 = time.perf_counter()
        for _ in range(n_batches):
            b = next(batches)
            if step:
                step(b)
            seen += len(b[0])
        sync()
        t = time.perf_counter() - t0
    return {"samples_per_s": seen / t, "gpu_util_median_pct": util.median}


def endless(fn: Callable[[int, int], tuple], per_epoch: int) -> Iterator[tuple]:
    epoch = 0
    while True:
        for i in range(per_epoch):
            yield fn(epoch, i)
        epoch += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--input-size", type=int, default=112)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="timed batches per measurement")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sections", default="loaders,overheads", help="comma-separated: loaders ((a)-(f)), overheads ((g))")
    ap.add_argument("--overhead-steps", type=int, default=None, help="timed steps per (g) variant (default: --steps)")
    ap.add_argument("--no-compile", action="store_true", help="(g) without the torch.compile variant")
    ap.add_argument("--repeats", type=int, default=3, help="(g): timed runs of --overhead-steps per variant (median, spread)")
    ap.add_argument("--results-dir", type=Path, default=RESULTS)
    args = ap.parse_args()

    import torch

    from engine.compose.generate import generate
    from engine.compose.online import OnlineSamples
    from engine.config import GenerateConfig
    from engine.learn.dali_loader import DaliLoader
    from engine.learn.data import IMAGENET_MEAN, IMAGENET_STD, load_split, make_batch, split_indices
    from engine.learn.device_cache import DeviceSplit
    from engine.learn.epochs import EpochPlan
    from engine.learn.evaluate import autocast, autocast_dtype, pick_device
    from engine.learn.metrics import scale_invariant_loss
    from engine.learn.model import EigenDepth, ModelConfig, param_groups
    from engine.learn.online_feed import OnlineBatches

    device = torch.device(pick_device(args.device))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    base = {"builtin_backgrounds": 20, "builtin_foregrounds": 20, "limit": args.samples, "height": 224, "width": 224}
    sections = set(args.sections.split(","))
    stores = {"zstd": SCRATCH / "zstd.zarr", "jpeg": SCRATCH / "jpeg.zarr"}
    if "loaders" not in sections:
        del stores["jpeg"]
    for codec, path in stores.items():
        generate(GenerateConfig(**base, image_codec=codec), path)
    mc = ModelConfig(height=args.input_size, width=args.input_size)
    sizes = ((mc.height, mc.width), mc.output_size)
    index, _ = split_indices(stores["zstd"], "all", 0.1, 0)
    r: dict[str, Any] = {"device": str(device), "samples": args.samples, "input_size": args.input_size,
                         "batch": args.batch, "steps": args.steps}
    print(f"device {device}, {args.samples} samples, input {args.input_size}, batch {args.batch}", flush=True)

    in_memory = load_split(stores["zstd"], index, *sizes)
    dtype = autocast_dtype("auto", device.type)
    if "overheads" in sections:
        r["overheads"] = overheads(args, mc, in_memory, device, dtype, sync)
    if "loaders" not in sections:
        path = save("loader", r, args.results_dir)
        shutil.rmtree(SCRATCH, ignore_errors=True)
        print(f"saved {path}")
        return
    streamed = load_split(stores["zstd"], index, *sizes, stream_images=True)
    plan = EpochPlan(len(index), args.batch, seed=0)
    per = plan.batches_per_epoch()

    def torch_loader(split) -> Iterator[tuple]:
        def batch(epoch: int, i: int) -> tuple:
            rows, _ = plan.rows(epoch, i)
            return make_batch(split, rows, epoch * 2**20 + i, str(device))
        return endless(batch, per)

    resident = DeviceSplit.from_arrays(in_memory, str(device), args.batch, 0)
    dali = {codec: DaliLoader(path, index, *sizes, args.batch, 0, device=str(device)) for codec, path in stores.items()}
    online = OnlineSamples(GenerateConfig(**base), device="cuda" if device.type == "cuda" else "cpu")
    online.fill_atlas()

    def online_batches() -> Iterator[tuple]:
        def batch(epoch: int, i: int) -> tuple:
            rows, _ = plan.rows(epoch, i)
            return online.read(index[rows])  # composited on the fly, at the store's size
        return endless(batch, per)

    sources: dict[str, Callable[[], Iterator[tuple]]] = {
        "a_device_resident": lambda: endless(resident.batch, resident.batches_per_epoch),
        "b_dali_lossless": lambda: dali["zstd"].from_step(0),
        "c_dali_jpeg": lambda: dali["jpeg"].from_step(0),
        "d_torch_in_memory": lambda: torch_loader(in_memory),
        "d_torch_streamed": lambda: torch_loader(streamed),
        # train --source online: composited, resized, augmented and normalised batches (OnlineBatches)
        "e_online_batches": lambda: OnlineBatches(online, index, *sizes, args.batch, 0, str(device),
                                                  mean=IMAGENET_MEAN.tolist(), std=IMAGENET_STD.tolist()).from_step(0),
    }

    # (f) loaders alone
    alone: dict[str, Any] = {}
    for name, make in {**sources, "e_online_compositing": online_batches}.items():
        alone[name] = rate(make(), args.steps, None, sync)
        print(f"(f) {name:22s} alone: {alone[name]['samples_per_s']:9.0f} samples/s", flush=True)
    r["loader_alone"] = alone

    # (a)-(d) feeding the coarse network
    model = EigenDepth(mc).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(param_groups(model, "coarse", 1.0), momentum=0.9)

    def train_step(b: tuple) -> None:
        x, depth, masks = b
        with autocast(device.type, dtype):
            log_pred = model(x, "coarse")
        loss = scale_invariant_loss(log_pred.float(), depth, depth > 0, 0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    training: dict[str, Any] = {}
    for name, make in sources.items():
        training[name] = rate(make(), args.steps, train_step, sync)
        print(f"    {name:22s} training: {training[name]['samples_per_s']:9.0f} images/s, GPU util "
              f"{training[name]['gpu_util_median_pct']}", flush=True)
    ceiling = training["a_device_resident"]["samples_per_s"]
    for v in training.values():
        v["vs_device_resident"] = v["samples_per_s"] / ceiling
    r["training"] = training
    r["dali_jpeg_vs_torch"] = training["c_dali_jpeg"]["samples_per_s"] / training["d_torch_in_memory"]["samples_per_s"]
    for loader in dali.values():
        loader.close()
    path = save("loader", r, args.results_dir)
    shutil.rmtree(SCRATCH, ignore_errors=True)
    print(f"saved {path}")


def overheads(args: argparse.Namespace, mc: Any, split: Any, device: Any, dtype: Any,
              sync: Callable[[], None]) -> dict[str, Any]:
    """(g): training images/s of each small-model overhead option, fed device-resident batches."""
    import torch

    from engine.learn.device_cache import DeviceSplit
    from engine.learn.evaluate import autocast
    from engine.learn.metrics import scale_invariant_loss
    from engine.learn.model import EigenDepth, batch_lr_factor, param_groups
    from engine.learn.step_runner import TrainStep, make_sgd

    cuda = device.type == "cuda"
    variants = [("default_sgd", 32, "default", False, False), ("fused_sgd", 32, "fused", False, False),
                ("fused_sgd_cuda_graphs", 32, "fused", True, False)]
    if not args.no_compile:
        variants.append(("fused_sgd_compile", 32, "fused", False, True))
    variants += [(f"batch{b}_linear_lr", b, "fused", False, False) for b in (128, 256)]
    if cuda:
        variants += [(f"batch{b}_linear_lr_cuda_graphs", b, "fused", True, False) for b in (128, 256)]
    steps = args.overhead_steps or args.steps
    out: dict[str, Any] = {"steps": steps}
    for name, batch, optim, graphs, compiled in variants:
        if batch > len(split):
            continue
        torch.manual_seed(0)
        model = EigenDepth(mc).to(device).to(memory_format=torch.channels_last)
        groups = param_groups(model, "coarse", batch_lr_factor(batch, "linear"))
        if optim == "fused":
            optimizer, mode = make_sgd(groups, momentum=0.9)
        else:
            optimizer, mode = torch.optim.SGD(groups, momentum=0.9), "default"
        forward = torch.compile(model) if compiled else model

        def loss_fn(_model: Any, x: Any, depth: Any, masks: Any) -> Any:
            with autocast(device.type, dtype, cache_enabled=not graphs):
                log_pred = forward(x, "coarse")
            return scale_invariant_loss(log_pred.float(), depth, depth > 0, 0.5)

        step = TrainStep(model, optimizer, loss_fn, graph=graphs, warmup=3)
        resident = DeviceSplit.from_arrays(split, str(device), batch, 0, drop_last=True)  # static shapes for graphs
        batches = endless(resident.batch, resident.batches_per_epoch)
        t0 = time.perf_counter()
        warm = 5 if step.graphed else 2  # a graphed step: 3 eager steps, then the capture
        runs = [rate(batches, steps, lambda b: step(*b), sync, warmup=warm if i == 0 else 0) for i in range(args.repeats)]
        rates = sorted(r_["samples_per_s"] for r_ in runs)
        res = {"samples_per_s": statistics.median(rates), "min": rates[0], "max": rates[-1],
               "gpu_util_median_pct": statistics.median([r_["gpu_util_median_pct"] or 0 for r_ in runs]) if cuda else None,
               "batch": batch, "optimizer": mode, "step_mode": step.mode, "seconds_incl_warmup": time.perf_counter() - t0}
        out[name] = res
        print(f"(g) {name:30s} {res['samples_per_s']:9.1f} images/s ({rates[0]:.1f}-{rates[-1]:.1f}; batch {batch}, "
              f"SGD {mode}, step {step.mode}, GPU util {res['gpu_util_median_pct']})", flush=True)
    base = out["default_sgd"]["samples_per_s"]
    for v in out.values():
        if isinstance(v, dict):
            v["vs_default"] = v["samples_per_s"] / base
    return out


if __name__ == "__main__":
    main()
