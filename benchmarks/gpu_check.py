"""Every GPU default run once, then every GPU figure, in one budgeted run: the
stages of ``bash benchmarks/gpu_check.sh`` (which installs the carried wheels,
then runs this).

    python benchmarks/gpu_check.py --plan          # the stages and their caps; no GPU needed
    python benchmarks/gpu_check.py --results FILE  # on a GPU machine (gpu_check.sh does this)

Stages run in order of value, so a run cut short still answers the most
important questions: (1) ``smoke``: each GPU default once on small sizes,
pass/fail per path; (2) ``headline``: 400k lossless and JPEG with ``generate``'s
defaults, the naive loop, the disk floor; (3) ``training``: images/s and NVML
utilisation per loader; (4) ``user_loader``: the user-loader benchmark, when
its script exists; (5) ``sweeps``: inner chunks and compressors (issue 24's
sweep and its verdict on the default), codecs, JPEG encoders, overhead
options, blend modes, scenes. Each step runs under its own ``timeout`` and appends one
JSON line to ``--results`` as it ends (status, seconds, its JSON outputs, the
tail of its log on failure), so a run cut short keeps what it measured. The
caps, setup included, add up to at most :data:`BUDGET_S`; a step never runs
past the run's deadline either (its cap is cut to what is left).
``python benchmarks/gpu_report.py FILE`` turns the results into RESULTS.md's
generated GPU section.

Nothing here imports more than the standard library: ``--plan`` runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: the whole run, setup included: 9 minutes
BUDGET_S = 540
#: kept back from the deadline: a timed-out step's 5 s to exit after SIGTERM, the logs' tarball
END_SLACK_S = 6
#: installing the carried wheels (gpu_setup.sh), before the first stage
SETUP_CAP_S = 35
#: where the steps write their stores and JSON
WORK = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/fgbg-check"))
USER_LOADER_SCRIPT = "benchmarks/bench_user_loader.py"


@dataclass(frozen=True)
class Step:
    """One command of a stage, run from the repository root under ``timeout cap_s``.

    ``command`` may name ``{dir}`` (this step's own folder: JSON written there
    lands in its result line), ``{work}`` (the run's scratch folder, shared by
    the steps) and ``{py}`` (the Python running this). ``needs``: ``"dali"``,
    ``"kornia"`` or a file of the checkout; the step is skipped (and says so)
    without it. ``background``: starts with its stage and runs beside the
    stage's other steps (its cap counts from its own start, within the stage's).
    ``fills``: the RESULTS.md figures it measures.
    """

    name: str
    cap_s: int
    command: str
    needs: str | None = None
    background: bool = False
    fills: str = ""


@dataclass(frozen=True)
class Stage:
    name: str
    purpose: str
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def cap_s(self) -> int:
        """The stage's worst case: its foreground steps one after another (background ones run beside them)."""
        return sum(s.cap_s for s in self.steps if not s.background)


_GEN = ("{py} cli.py generate --builtin-backgrounds 8 --builtin-foregrounds 8 --limit 4096 --shard-size 1024 "
        "--device cuda --overwrite --quiet")
_TRAIN = "{py} cli.py train --steps 20 --eval-every 20 --eval-samples 256 --checkpoint-every 20 --device cuda --quiet"
_LOADER = "{py} benchmarks/bench_loader.py --input-size 224 --results-dir {dir}"

STAGES: tuple[Stage, ...] = (
    Stage("smoke", "every GPU default once on small sizes: pass/fail per path", (
        Step("pytest_gpu", 88, "{py} -m pytest -q -m gpu tests -p no:cacheprovider", background=True,
             fills="the gpu-marked tests: real kernels, JPEG bytes = the CPU's, nvCOMP/nvJPEG stores read back, "
                   "CPU = GPU stores, CUDA-graphed step = eager, evaluate --loader dali vs torch"),
        Step("probe", 10, "{py} benchmarks/gpu_check.py --probe > {dir}/probe.json",
             fills="the GPU, driver and versions (numba-cuda among them); the smallest kernel compiled and run"),
        Step("generate_lossless", 14, _GEN + " --out {work}/lossless.zarr --compressor auto",
             fills="generate --device cuda, --compressor auto (hybrid nvCOMP + CPU)"),
        Step("generate_jpeg", 12, _GEN + " --out {work}/jpeg.zarr --image-codec jpeg --jpeg-encoder auto",
             fills="generate --device cuda --image-codec jpeg, --jpeg-encoder auto (fgbg's kernels)"),
        Step("train_dali_mixed", 12, _TRAIN + " --data {work}/jpeg.zarr --out {work}/run-dali --loader dali",
             needs="dali", fills="train --loader dali (the default): JPEG decoded by DALI's mixed decoder"),
        Step("train_cache_device", 8, _TRAIN + " --data {work}/lossless.zarr --out {work}/run-cache --loader torch "
             "--cache device", fills="train --cache device"),
        Step("train_source_online", 9, _TRAIN + " --data {work}/lossless.zarr --out {work}/run-online --loader torch "
             "--source online", fills="train --source online (compositing on the device)"),
        Step("train_cuda_graphs", 8, _TRAIN + " --data {work}/lossless.zarr --out {work}/run-graphs --loader torch "
             "--cache device --cuda-graphs", fills="train --cuda-graphs"),
        Step("evaluate_dali", 8, "{py} cli.py evaluate --data {work}/jpeg.zarr --checkpoint {work}/run-dali/coarse.pt "
             "--loader dali --device cuda --json > {dir}/evaluate.json", needs="dali",
             fills="evaluate --loader dali on the GPU"),
        Step("generate_kornia_blend", 9, "{py} cli.py generate --builtin-backgrounds 4 --builtin-foregrounds 4 "
             "--limit 1024 --shard-size 512 --device cuda --overwrite --quiet --blend motion --harmonize "
             "--out {work}/blend.zarr", needs="kornia", fills="generate --blend motion --harmonize on CUDA (Kornia)"),
    )),
    Stage("headline", "the issue-12 targets: 400k with generate's defaults, naive loop, disk floor", (
        Step("bench_gpu_headline", 150, "{py} benchmarks/bench_gpu.py --part headline --budget-s 130 "
             "--jpeg-samples 200000 --compressors auto --jsonl {dir}/stages.jsonl --results-dir {dir}",
             fills="ceilings (HBM copy, pinned D2H, disk write); naive loop single and pool; start-up; generate "
                   "400k lossless (auto: hybrid, each compressor's share of shards) and JPEG (200k, projected to "
                   "400k): writing phase, whole call, vs floor, vs naive; the targets met or not"),
    )),
    Stage("training", "training images/s and NVML GPU utilisation per loader", (
        Step("bench_loader", 105, _LOADER + " --sections loaders --samples 20000 --steps 90",
             fills="(a)-(f): device-resident, DALI lossless, DALI JPEG (mixed), torch (in memory, streamed), "
                   "online; each loader alone; GPU utilisation (NVML) during each"),
    )),
    Stage("user_loader", "the user-loader benchmark (runs only when its script exists)", (
        Step("bench_user_loader", 20, "{py} " + USER_LOADER_SCRIPT + " --device cuda --seconds 3 --json {dir}/user_loader.json",
             needs=USER_LOADER_SCRIPT, fills="engine.loader vs a plain torch DataLoader (workers = cores) for examples/train_segmentation.py's work, images/s side by side"),
    )),
    Stage("sweeps", "inner chunks and compressors, codecs, JPEG encoders, overhead options, blend modes, scenes: "
          "as time allows", (
        Step("bench_gpu_sweeps", 53, "{py} benchmarks/bench_gpu.py --part sweeps --budget-s 39 --batch-sizes 1024,4096 "
             "--compared-samples 20480 --cpu-samples 20000 --jsonl {dir}/stages.jsonl --results-dir {dir}",
             fills="kernel per batch size; first issue 24's sweep: nvCOMP alone on one shard in pieces of 64 KiB, "
                   "256 KiB, one sample's image (--chunk-size 1) and the default chunk (one call per array vs per "
                   "shard: GB/s, ratio, next to CPU zstd-3; 400k projected from the compressor and the measured "
                   "disk rate), then generate end to end per setting (20,480 samples each, the writing phase "
                   "projected to 400k): --compressor nvcomp with the default chunks, --chunk-size 1 and 2, hybrid "
                   "at --compression-level 3 and 2, cpu; GB/s, ratio, store bytes, x floor, the GPU's share of "
                   "shards, the writers' CPU cost per step (compression's share); the chunk verdict (fastest "
                   "setting, today's default or what to change); then one shard's stages (host tables, D2H, "
                   "statistics on the GPU); JPEG encoders (fgbg, nvJPEG, nvImageCodec, streams; auto's pick "
                   "confirmed or not); nvCOMP vs CPU zstd-3; generate with --compressor cpu (projected to 400k); "
                   "CPU generate"),
        Step("writer_scaling", 12, "{py} benchmarks/bench_writers.py --shard-size 1024 --shards-per-core 1 --repeats 1 "
             "--scratch {work} --json {dir}/writers.json",
             fills="the CPU writers on one core vs every core (generate's CPU-compressor writer count): samples/s each, "
                   "scaling efficiency (target >= 0.8 of cores x one core), compression's share of their CPU"),
        Step("loader_overheads", 15, _LOADER + " --sections overheads --samples 8000 --steps 40 --overhead-steps 40 "
             "--repeats 1 --no-compile", fills="(g): default vs fused SGD, CUDA graphs, batch 128/256"),
        Step("blend_modes", 16, "{py} benchmarks/bench_blend.py --device cuda --results-dir {dir}", needs="kornia",
             fills="images/s per blend mode on the GPU (batches of 2,048 at 224 px)"),
        Step("objects", 14, "{py} benchmarks/bench_objects.py --device cuda --variants '1 1,1 3,3 3' "
             "--truncations 0,0.5 --samples 4096 --shard-size 1024 --repeats 1 --results-dir {dir}",
             fills="generate's writing phase with 1 1 / 1 3 / 3 3 objects per image, truncation 0 and 0.5"),
        Step("objects_online", 10, "{py} benchmarks/bench_objects.py --online --device cuda --variants '1 1,1 3,3 3' "
             "--batch 256 --reads 4 --samples 4096 --repeats 1 --results-dir {dir}",
             fills="online reads (train --source online) with several objects"),
        Step("batch_assembly", 8, "{py} benchmarks/bench_data.py --results-dir {dir}",
             fills="batch assembly on the GPU"),
        Step("cli_bench_quick", 12, "{py} cli.py bench --quick --device cuda --out {dir} --scratch {work}/bench -q",
             fills="cli.py bench's CUDA stages and ceilings (quick sizes: compare with quick runs only)"),
    )),
)


def total_cap_s(stages: tuple[Stage, ...] = STAGES) -> int:
    return SETUP_CAP_S + sum(s.cap_s for s in stages)


def print_plan(stages: tuple[Stage, ...] = STAGES, budget_s: int = BUDGET_S) -> bool:
    """Print the stages, their steps and caps; ``True`` when the caps fit ``budget_s``."""
    print(f"{'setup':12s} {SETUP_CAP_S:4d} s  install the carried wheels (gpu_setup.sh), record the GPU")
    for stage in stages:
        print(f"{stage.name:12s} {stage.cap_s:4d} s  {stage.purpose}")
        for step in stage.steps:
            how = " (beside the others)" if step.background else ""
            need = f" [needs {step.needs}]" if step.needs else ""
            print(f"  {step.name:22s} {step.cap_s:4d} s{how}{need}: {step.fills}")
    total = total_cap_s(stages)
    fits = total <= budget_s
    print(f"{'total':12s} {total:4d} s  of a {budget_s} s budget: {'fits' if fits else 'OVER BUDGET'}")
    return fits


def probe() -> dict[str, Any]:
    """The GPU and the versions that matter, and whether the smallest kernel compiles and runs."""
    from importlib import metadata

    out: dict[str, Any] = {"python": sys.version.split()[0], "cores": os.cpu_count()}
    for package in ("numpy", "numba", "numba-cuda", "torch", "torchvision", "nvidia-dali-cuda130", "kornia",
                    "zarr", "numcodecs", "cupy-cuda13x", "cupy-cuda12x", "nvidia-nvcomp-cu13",
                    "nvidia-nvimgcodec-cu13", "nvidia-ml-py", "tensorstore"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    smi = shutil.which("nvidia-smi")
    if smi:
        run = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)
        out["gpu"] = run.stdout.strip()
    try:
        from kernels.probe_cuda import run_probe

        out["probe_kernel"] = run_probe()
    except Exception as e:  # noqa: BLE001 - the probe's result is what broke
        out["probe_kernel"] = f"{type(e).__name__}: {e}"
    return out


def missing(need: str | None) -> str | None:
    """Why a step cannot run here (``None``: it can)."""
    if need is None:
        return None
    if need in ("dali", "kornia"):
        module = {"dali": "nvidia.dali", "kornia": "kornia"}[need]
        ok = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0
        return None if ok else f"{module} does not import (not carried?)"
    return None if (ROOT / need).exists() else f"{need} does not exist"


def read_outputs(folder: Path) -> dict[str, Any]:
    """The JSON (``*.json``, ``*.jsonl``) a step wrote in its folder."""
    found: dict[str, Any] = {}
    for path in sorted(folder.glob("*.json*")):
        text = path.read_text()
        try:
            if path.suffix == ".jsonl":
                found[path.name] = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                found[path.name] = json.loads(text)
        except json.JSONDecodeError:
            found[path.name] = {"unreadable": text[-500:]}
    return found


@dataclass
class Running:
    step: Step
    folder: Path
    process: subprocess.Popen
    started: float
    cap_s: float
    log: Any


def start(step: Step, stage: str, cap_s: float) -> Running:
    folder = WORK / "steps" / f"{stage}.{step.name}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    command = step.command.format(dir=folder, work=WORK, py=sys.executable)
    log = open(folder / "log.txt", "w")
    # its own process group: a timeout ends the step and every process it started
    process = subprocess.Popen(["bash", "-c", command], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    return Running(step, folder, process, time.monotonic(), cap_s, log)


def finish(running: Running, stage: str, results: Path) -> dict[str, Any]:
    """Wait for the step (at most its cap), then append its line to ``results``."""
    left = running.cap_s - (time.monotonic() - running.started)
    try:
        rc = running.process.wait(timeout=max(left, 0.0))
        status = "pass" if rc == 0 else "fail"
    except subprocess.TimeoutExpired:
        os.killpg(running.process.pid, signal.SIGTERM)
        try:
            running.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait()
        rc, status = None, "timeout"
    running.log.close()
    wall = time.monotonic() - running.started
    line: dict[str, Any] = {"stage": stage, "step": running.step.name, "status": status, "rc": rc,
                            "seconds": round(wall, 2), "cap_s": round(running.cap_s, 1),
                            "command": running.step.command, "outputs": read_outputs(running.folder)}
    if status != "pass":
        line["log_tail"] = (running.folder / "log.txt").read_text(errors="replace").splitlines()[-20:]
    append(results, line)
    print(f"[{stage}] {running.step.name:22s} {status:8s} {wall:6.1f} s (cap {running.cap_s:.0f} s)", flush=True)
    return line


def append(results: Path, line: dict[str, Any]) -> None:
    with open(results, "a") as f:
        f.write(json.dumps(line, default=str) + "\n")


def skip(step: Step, stage: str, results: Path, why: str) -> None:
    append(results, {"stage": stage, "step": step.name, "status": "skipped", "why": why, "command": step.command})
    print(f"[{stage}] {step.name:22s} skipped: {why}", flush=True)


def run_stages(stages: tuple[Stage, ...], results: Path, deadline: float, only: set[str] | None = None) -> int:
    """Run ``stages`` in order until ``deadline`` (``time.monotonic()``); returns how many steps failed."""
    failed = 0
    for stage in stages:
        if only and stage.name not in only:
            continue
        background: list[Running] = []
        for step in stage.steps:
            left = deadline - time.monotonic()
            why = missing(step.needs) or (None if left >= 3 else "the run's time is spent")
            if why:
                skip(step, stage.name, results, why)
                continue
            running = start(step, stage.name, min(step.cap_s, left))
            if step.background:
                background.append(running)
                continue
            failed += finish(running, stage.name, results)["status"] != "pass"
        for running in background:
            failed += finish(running, stage.name, results)["status"] != "pass"
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", action="store_true", help="print the stages and their caps; exit 1 if over budget")
    ap.add_argument("--budget-s", type=int, default=BUDGET_S, help="--plan: the budget the caps must fit")
    ap.add_argument("--cap", choices=["setup"], help="print a cap in seconds (for gpu_check.sh)")
    ap.add_argument("--probe", action="store_true", help="print the probe's JSON (a step of the smoke stage)")
    ap.add_argument("--results", type=Path, default=Path(os.environ.get("OUT", "/tmp/out")) / "gpu_check.jsonl")
    ap.add_argument("--started", type=float, default=None,
                    help="epoch seconds the whole run began (gpu_check.sh: before setup); the deadline counts from it")
    ap.add_argument("--stages", default=None, help="comma-separated stages to run (default: all, in order)")
    args = ap.parse_args()
    if args.plan:
        return 0 if print_plan(budget_s=args.budget_s) else 1
    if args.cap:
        print(SETUP_CAP_S)
        return 0
    if args.probe:
        print(json.dumps(probe(), indent=2))
        return 0
    elapsed = time.time() - args.started if args.started else 0.0
    deadline = time.monotonic() + BUDGET_S - END_SLACK_S - elapsed
    args.results.parent.mkdir(parents=True, exist_ok=True)
    append(args.results, {"stage": "setup", "step": "setup", "status": "pass", "seconds": round(elapsed, 2),
                          "cap_s": SETUP_CAP_S, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "commit": _commit()})
    WORK.mkdir(parents=True, exist_ok=True)
    failed = run_stages(STAGES, args.results, deadline, set(args.stages.split(",")) if args.stages else None)
    print(f"results: {args.results} ({failed} steps not passed); "
          f"python benchmarks/gpu_report.py {args.results} puts them in benchmarks/RESULTS.md", flush=True)
    return 0


def _commit() -> str | None:
    run = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return run.stdout.strip() or None


if __name__ == "__main__":
    sys.exit(main())
