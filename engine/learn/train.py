"""Training the coarse/fine network, read top to bottom.

As in the paper: first the coarse network alone, then the fine network with
the coarse one fixed. One config dataclass; one loop; checkpoints that let
``--resume`` continue exactly (weights, optimiser, grad scaler, step, random
states, and batches that are a pure function of the step).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.distributed import Ranks
from engine.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from engine.learn.online_feed import SampleSource

log = logging.getLogger(__name__)

#: called with (step, steps, loss, images per second)
TrainProgress = Callable[[int, int, float, float], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint).

    Attributes:
        data: the Zarr store to train on.
        out: run folder; checkpoints are ``<out>/<stage>.pt``.
        stage: ``coarse`` or ``fine`` (the fine stage starts from ``init``).
        steps: optimiser steps of this stage.
        batch: samples per step (the paper's 32).
        optimizer: ``sgd`` (momentum 0.9, the paper's per-layer rates) or ``adamw``.
        lr_scale: multiplies the paper's per-layer rates (``sgd``).
        adamw_lr: learning rate of every layer with ``adamw``.
        lr_scaling: how the learning rates follow ``batch``, the paper's being for
            batch 32 (:func:`engine.learn.model.batch_lr_factor`): ``linear``
            (× batch/32), ``sqrt`` (× √(batch/32)) or ``none``; applied on top of
            ``lr_scale`` (sgd) or ``adamw_lr``. ``steps`` stays in optimiser
            steps: to see the paper's number of samples at another batch, train
            ``samples / batch`` steps. The rates used are saved in the checkpoint.
        weight_decay: L2 weight decay.
        height, width: network input size; the output is 1/4 of it.
        coarse_channels: ``paper`` or ``torchvision`` (AlexNet's, for ``init_from``).
        init: checkpoint of a coarse stage to start the fine stage from.
        init_from: AlexNet-style weights for coarse conv1-5 (e.g. torchvision's file).
        val_fraction: fraction of backgrounds held out for validation.
        split_seed: seed of which backgrounds are held out.
        seed: seed of initialisation, batches, augmentation and dropout.
        loss_mask: pixels in the loss: ``all`` valid, ``foreground`` or ``background``.
        lam: λ of the scale-invariant loss.
        eval_every: validate every N steps (on ``eval_samples`` held-out samples).
        eval_samples: size of that periodic validation subset (the final one uses all).
        checkpoint_every: write the checkpoint every N steps (and at the end).
        precision: ``auto`` (bf16 on GPUs with it, else fp16 + grad scaler; fp32
            on the CPU), ``fp32``, ``bf16`` or ``fp16``.
        compile: wrap the model in ``torch.compile``.
        cuda_graphs: capture the whole training step (forward, loss, backward,
            optimiser) into a CUDA graph after a few eager steps and replay it
            (:class:`engine.learn.step_runner.TrainStep`). Where it cannot (the
            CPU, fp16's grad scaler, ``compile``), the step runs eagerly with
            the reason logged; the weights are those of the eager loop.
        device: ``auto``, ``cpu`` or ``cuda``.
        max_train_samples: keep a seeded subset of this many training samples.
        stream: with ``loader='torch'``: read each batch's images from the store
            instead of loading the split into memory (stores larger than RAM;
            depth and masks, small at the output size, stay in memory). Same
            batches, bit for bit. The DALI loader always reads batch by batch.
        loader: ``dali`` (default: shard-aligned reads into an NVIDIA DALI graph
            that decodes, resizes, flips, jitters and normalises — on the GPU
            when training there; :mod:`engine.learn.dali_loader`) or ``torch``
            (the split resized into memory by torch, batches by
            :func:`engine.learn.data.make_batch`). Batches of both follow the
            same seeded epochs and augmentation draws
            (:mod:`engine.learn.epochs`) except that ``torch`` draws batches
            across epoch boundaries (:class:`~engine.learn.data.BatchSampler`).
        cache: ``device``: load the training split once into the device's
            memory and index batches there (:mod:`engine.learn.device_cache`),
            the ceiling the loaders are measured against; ``none``: the loader reads.
        normalize: input normalisation: ``store`` (the store's own per-channel
            mean and std, from its attributes or one pass over it) or
            ``imagenet``. Recorded in the checkpoint; evaluation and
            prediction use it; the fine stage takes its coarse network's.
        source: where training images come from: ``store`` (read by the
            loader) or ``online`` (composited when each batch is drawn, by a
            sample source given to :func:`train`, from the store's own
            settings: :mod:`engine.learn.online_feed`); validation and the
            held-out split always come from the store.
    """

    data: str
    out: str
    stage: str = "coarse"
    steps: int = 2000
    batch: int = 32
    optimizer: str = "sgd"
    lr_scale: float = 1.0
    adamw_lr: float = 3e-4
    lr_scaling: str = "none"
    weight_decay: float = 0.0
    height: int = 112
    width: int = 112
    coarse_channels: str = "paper"
    init: str | None = None
    init_from: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    loss_mask: str = "all"
    lam: float = 0.5
    eval_every: int = 250
    eval_samples: int = 2000
    checkpoint_every: int = 500
    precision: str = "auto"
    compile: bool = False
    cuda_graphs: bool = False
    device: str = "auto"
    max_train_samples: int | None = None
    stream: bool = False
    loader: str = "dali"
    cache: str = "none"
    normalize: str = "store"
    source: str = "store"

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(self.stage in ("coarse", "fine"), f"--stage must be coarse or fine, got {self.stage!r}")
        need(self.stage == "coarse" or self.init is not None or self.init_from is None,
             "--init-from initialises the coarse stage")
        need(self.optimizer in ("sgd", "adamw"), f"--optimizer must be sgd or adamw, got {self.optimizer!r}")
        need(self.steps >= 1 and self.batch >= 1, "--steps and --batch must be at least 1")
        need(0 < self.val_fraction < 1, f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        need(self.eval_every >= 1 and self.checkpoint_every >= 1, "--eval-every and --checkpoint-every must be >= 1")
        need(self.lr_scale > 0 and self.adamw_lr > 0, "learning rates must be positive")
        need(self.loss_mask in ("all", "foreground", "background"),
             f"--loss-mask must be all, foreground or background, got {self.loss_mask!r}")
        need(self.lr_scaling in ("linear", "sqrt", "none"),
             f"--lr-scaling must be linear, sqrt or none, got {self.lr_scaling!r}")
        need(not (self.cuda_graphs and self.compile),
             "--cuda-graphs and --compile exclude each other (bench_loader.py measures each on its own)")
        need(self.loader in ("dali", "torch"), f"--loader must be dali or torch, got {self.loader!r}")
        need(self.cache in ("none", "device"), f"--cache must be none or device, got {self.cache!r}")
        need(self.normalize in ("store", "imagenet"), f"--normalize must be store or imagenet, got {self.normalize!r}")
        need(self.source in ("store", "online"), f"--source must be store or online, got {self.source!r}")
        need(self.source == "store" or (self.cache == "none" and not self.stream),
             "--source online composites each batch: it goes without --cache device and --stream")
        need(not self.stream or (self.loader == "torch" and self.cache == "none"),
             "--stream is for --loader torch (the DALI loader always reads batch by batch; --cache device loads the split)")

    def checkpoint_path(self) -> Path:
        return Path(self.out) / f"{self.stage}.pt"

    #: fields that may change when resuming (how long and how often, not what)
    RESUMABLE_CHANGES = ("steps", "eval_every", "checkpoint_every", "device", "compile", "cuda_graphs", "out", "data",
                         "stream")


@dataclass(frozen=True)
class TrainReport:
    """What a run did."""

    checkpoint: Path
    stage: str
    steps_run: int
    seconds: float
    images_per_second: float
    metrics: dict[str, dict[str, float]]
    #: the fine stage's files that ``overwrite`` of the coarse stage deleted
    #: (built on the coarse network it replaced)
    removed_fine: tuple[Path, ...] = ()
    #: images/s of every rank under torchrun, in rank order (``()`` for one process)
    rank_images_per_second: tuple[float, ...] = ()
    #: the first 48 bits of a SHA-256 of the trained parameters (equal on every rank: checked)
    parameters_digest: int = 0


#: what a stage writes into the run folder, besides the checkpoint
STAGE_FILES = ("{stage}.pt", "{stage}_log.csv", "{stage}_metrics.json", "{stage}_curves.png", "{stage}_predictions.png")


def stage_files(out: str | Path, stage: str) -> list[Path]:
    """The files a run of ``stage`` writes into ``out`` (checkpoint, log, metrics, plots)."""
    return [Path(out) / name.format(stage=stage) for name in STAGE_FILES]


def check_run_folder(out: str | Path) -> None:
    """Refuse, before any work, a run folder that cannot be made or written: its
    nearest existing ancestor must be a writable folder (a read-only file system
    or a file in the way would otherwise fail at the first checkpoint).

    Raises:
        ConfigError: a file where the folder or one of its parents should be.
        StoreError: that ancestor is not writable.
    """
    out = Path(out)
    here = out
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise ConfigError(f"--out {out}: {here} is a file, not a folder; choose another --out")
    if not os.access(here, os.W_OK | os.X_OK):
        raise StoreError(f"--out {out}: cannot write in {here} (read-only file system or no permission); "
                         "choose another --out")


def make_run_folder(out: str | Path) -> None:
    """Create the run folder (once the inputs are accepted).

    Raises:
        StoreError: it cannot be created.
    """
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"--out {out}: cannot create the run folder ({e.strerror or e}); "
                         "choose another --out") from None


def check_earlier_run(config: TrainConfig, resume: bool, overwrite: bool) -> list[Path]:
    """Refuse to replace an earlier run of this stage unless asked to.

    Returns:
        The files ``overwrite`` will delete: this stage's, plus the fine stage's
        when retraining coarse (a fine network built on the old coarse one
        would no longer match it).

    Raises:
        ConfigError: both flags, or this stage's files exist and neither flag is given.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    mine = [p for p in stage_files(config.out, config.stage) if p.exists()]
    if mine and not resume and not overwrite:
        raise ConfigError(f"{mine[0]}: an earlier {config.stage} run is there; continue it with --resume, "
                          "replace it with --overwrite, or choose another --out")
    if not overwrite:
        return []
    later = stage_files(config.out, "fine") if config.stage == "coarse" else []
    return mine + [p for p in later if p.exists()]


def _rng_state() -> dict[str, Any]:
    """torch's generators (dropout); batches and augmentation are seeded per step instead."""
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(config: TrainConfig, resume: bool = False, progress: TrainProgress | None = None,
          plot: bool = False, overwrite: bool = False, allow_incomplete: bool = False,
          samples: SampleSource | None = None, ranks: Ranks | None = None) -> TrainReport:
    """Train one stage; returns the final validation metrics (model and constant predictor).

    An earlier run of the stage in ``config.out`` is continued with ``resume``,
    replaced with ``overwrite`` (which also deletes a coarse stage's fine files),
    and otherwise refused (:func:`check_earlier_run`). An incomplete store (not
    every shard generated) is refused unless ``allow_incomplete``. With
    ``config.source == 'online'``, ``samples`` composites the training batches.

    Under torchrun (``ranks`` of several, process group started by the caller)
    the model is wrapped in DistributedDataParallel and ``config.batch`` is
    the *global* batch: step ``s`` reads the same samples as one process
    would, split across ranks (:func:`rank_rows`), so a run resumes with any
    rank count on the same data order. Rank 0 alone writes the run folder.
    """
    import torch

    from engine.learn.checkpoint import coarse_fingerprint, load_checkpoint, save_checkpoint
    from engine.learn.data import check_complete, load_split, normalization, split_indices
    from engine.learn.evaluate import autocast, autocast_dtype, loss_mask, pick_device
    from engine.learn.metrics import scale_invariant_loss
    from engine.learn.model import EigenDepth, ModelConfig, batch_lr_factor, load_alexnet_convs, param_groups
    from engine.learn.step_runner import TrainStep, make_sgd

    t_start = time.perf_counter()
    ranks = ranks or Ranks()
    check_ranks(config, ranks)
    to_remove = check_earlier_run(config, resume, overwrite)
    if ranks.leader:
        check_run_folder(config.out)
    device = pick_device(config.device)
    dtype = autocast_dtype(config.precision, device)
    out = Path(config.out)
    ckpt_path = config.checkpoint_path()
    torch.manual_seed(config.seed)

    # -- the model, and where it starts from ------------------------------------------
    mc = ModelConfig(height=config.height, width=config.width, coarse_channels=config.coarse_channels)
    model = EigenDepth(mc)
    resumed = load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    built_on: dict[str, Any] = {}  # fine: the coarse checkpoint it starts from, and its weights' fingerprint
    if resumed is not None:
        _check_resumable(resumed, config)
        if config.stage == "fine":
            built_on = {k: resumed.get(k) for k in ("coarse_checkpoint", "coarse_sha256")}
            _check_same_coarse(built_on, config)
    elif config.stage == "fine":
        if config.init is None:
            raise ConfigError("--stage fine needs --init runs/<exp>/coarse.pt (the trained coarse network)")
        start_from = load_checkpoint(config.init)
        if start_from["model_config"] != dataclasses.asdict(mc):
            raise ConfigError(f"{config.init}: made for input {start_from['model_config']['width']}x"
                              f"{start_from['model_config']['height']}, this run is {mc.width}x{mc.height}")
        model.load_state_dict(start_from["model"])
        built_on = {"coarse_checkpoint": str(Path(config.init).resolve()),
                    "coarse_sha256": coarse_fingerprint(start_from["model"])}
    elif config.init_from is not None:
        load_alexnet_convs(model, torch.load(config.init_from, map_location="cpu", weights_only=True), config.init_from)
    if config.stage == "fine":
        model.coarse.requires_grad_(False)  # the paper trains fine with coarse fixed
    model = model.to(device).to(memory_format=torch.channels_last)

    # -- data: held-out backgrounds, resized into memory (images streamed with --stream) ------
    # held-out backgrounds among those the completed samples hold; a resumed run keeps its recorded ones
    recorded = None if resumed is None else resumed.get("val_backgrounds")
    train_index, val_bgs = split_indices(config.data, "train", config.val_fraction, config.split_seed, recorded)
    val_index, _ = split_indices(config.data, "val", config.val_fraction, config.split_seed, val_bgs)
    incomplete = check_complete(config.data, allow_incomplete)
    if incomplete:
        log.warning(incomplete)
    if config.max_train_samples is not None and config.max_train_samples < len(train_index):
        pick = np.random.default_rng([config.seed, 0x7A1]).choice(len(train_index), config.max_train_samples, replace=False)
        train_index = np.sort(train_index[pick])
    if resumed is not None:  # what the network has been trained on so far
        norm = normalization(resumed)
    elif config.stage == "fine":  # what the coarse network it builds on expects
        norm = normalization(start_from)
    else:
        norm = input_normalization(config)
    sizes = ((mc.height, mc.width), mc.output_size)
    # images stay in the store (the DALI loader reads them), or are composited when drawn
    reads_batches = (config.loader == "dali" and config.cache == "none") or config.source == "online"
    if config.source == "online" and samples is None:
        raise ConfigError("--source online needs a sample source (cli.py train builds it from the store's settings)")
    train_data = load_split(config.data, train_index, *sizes, stream_images=config.stream,
                            with_images=not reads_batches)
    # validation reads as training does: through the DALI graph (no augmentation, in order) when the
    # DALI loader feeds training, else make_batch over images in memory (loaded then, or for --plot)
    dali_val = config.loader == "dali" and config.cache == "none" and config.source == "store"
    val_data = load_split(config.data, val_index, *sizes, stream_images=config.stream,
                          with_images=not dali_val or plot)
    eval_rows = np.sort(np.random.default_rng([config.seed, 0xE7A]).permutation(len(val_data))[: config.eval_samples])
    val_subset = type(val_data)(**{f.name: None if getattr(val_data, f.name) is None else getattr(val_data, f.name)[eval_rows]
                                   for f in dataclasses.fields(val_data)})
    validate = Validator(model, config.stage, val_data, val_subset, device, dtype, norm,
                         dali=(config.data, sizes[0]) if dali_val else None)
    valid_train = train_data.depth[train_data.depth > 0]
    constant_log_depth = float(np.log(valid_train).mean())  # the constant predictor's value
    log.info("train %d samples, val %d (backgrounds %s)", len(train_data), len(val_data), val_bgs.tolist())

    # -- optimiser: the paper's SGD with per-layer rates, or AdamW ----------------------------
    factor = batch_lr_factor(config.batch, config.lr_scaling)  # the paper's rates are for batch 32
    groups = param_groups(model, config.stage, config.lr_scale * factor)
    if config.optimizer == "sgd":
        optimizer, mode = make_sgd(groups, momentum=0.9, weight_decay=config.weight_decay)  # fused where torch has it
        log.info("SGD: %s", mode)
    else:
        for g in groups:
            g["lr"] = config.adamw_lr * factor
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    learning_rates = {g["name"]: g["lr"] for g in optimizer.param_groups}
    log.info("learning rates (batch %d, --lr-scaling %s, x%.4g): %s", config.batch, config.lr_scaling, factor,
             learning_rates)
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    step = 0
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scaler.load_state_dict(resumed["scaler"])
        step = int(resumed["step"])
        _set_rng_state(resumed["rng"])
    forward = model
    if ranks.world > 1:  # gradients averaged across ranks; rank 0's weights broadcast at the start
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None,
                                          find_unused_parameters=True)  # the coarse stage leaves fine's layers unused
    forward = torch.compile(forward) if config.compile else forward

    def step_loss(_model: Any, x: Any, depth: Any, masks: Any) -> Any:  # TrainStep's loss_fn; forward is the model
        valid = loss_mask(depth, masks, config.loss_mask)  # (B, 1, h, w)
        with autocast(device, dtype, cache_enabled=not config.cuda_graphs):
            log_pred = forward(x, config.stage)  # (B, 1, h, w) log metres
        return scale_invariant_loss(log_pred.float(), depth, valid, config.lam)

    if config.cuda_graphs and ranks.world > 1:
        log.warning("--cuda-graphs: not with several ranks (DDP's gradient all-reduce is not captured); "
                    "training eagerly")
        graph_step = None
    else:
        graph_step = _graph_step(config, scaler, model, optimizer, step_loss, TrainStep)
    feed = training_loader(config, train_data, mc, device, norm, samples, ranks)  # the public loader's machinery
    batches = feed.from_step(step)  # (x, depth, masks) on the device, a pure function of the step
    log_path = out / f"{config.stage}_log.csv"
    history = _read_log(log_path, upto=step) if resumed is not None else []

    def checkpoint(metrics: dict | None) -> None:
        if not ranks.leader:
            return
        save_checkpoint(ckpt_path, {
            "stage": config.stage, "step": step, "model": model.state_dict(), "model_config": dataclasses.asdict(mc),
            "train_config": dataclasses.asdict(config), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(), "rng": _rng_state(), "constant_log_depth": constant_log_depth,
            "val_backgrounds": val_bgs.tolist(), "metrics": metrics, "learning_rates": learning_rates, **built_on,
            "normalization": {"mean": [float(v) for v in norm[0]], "std": [float(v) for v in norm[1]]},
        })
        _write_log(log_path, history)

    # -- the loop (data and model are ready: only now make the run folder, and replace an earlier run) --
    if ranks.leader:  # rank 0 alone writes the run folder; a refused run leaves no empty one behind
        make_run_folder(out)
    for path in to_remove if ranks.leader else ():
        path.unlink(missing_ok=True)
        log.info("removed %s (--overwrite)", path)
    model.train()
    if config.stage == "fine":
        model.coarse.eval()  # fixed: no dropout in the coarse network
    steps_run = 0
    t_loop = time.perf_counter()
    seen = 0
    while step < config.steps:
        x, depth, masks = next(batches)  # (B, 3, H, W), (B, 1, h, w), (B, 1, h, w) on the device
        if graph_step is not None:  # forward, loss, backward and update: captured, or eager with the same maths
            loss = graph_step(x, depth, masks)
        else:
            loss = step_loss(model, x, depth, masks)
            if torch.isfinite(loss):
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
        if not torch.isfinite(loss):
            raise ConfigError(f"the loss became {loss.item()} at step {step}: lower the learning rate "
                              "(--lr-scale, --lr-scaling, or --optimizer adamw)")
        step += 1
        steps_run += 1
        seen += len(x)
        rate = seen / max(time.perf_counter() - t_loop, 1e-9)
        row: dict[str, Any] = {"step": step, "loss": loss.item(), "images_per_s": rate}
        if step % config.eval_every == 0 and step < config.steps and ranks.leader:
            metrics = validate(subset=True)["model"]
            row.update({f"val_{k}": v for k, v in metrics.items()})
            if config.stage == "fine":
                model.coarse.eval()
        history.append(row)
        if progress:
            progress(step, config.steps, row["loss"], rate)
        if step % config.checkpoint_every == 0 and step < config.steps:
            checkpoint(None)

    rate = seen / max(time.perf_counter() - t_loop, 1e-9)
    rates, digest = _ranks_agree(model, ranks, rate, device)
    if not ranks.leader:
        validate.close()
        return TrainReport(ckpt_path, config.stage, steps_run, time.perf_counter() - t_start, rate, {},
                           rank_images_per_second=rates, parameters_digest=digest)
    final = validate(subset=False, constant_log_depth=constant_log_depth)
    validate.close()
    if history:
        history[-1].update({f"val_{k}": v for k, v in final["model"].items()})
    checkpoint(final)
    (out / f"{config.stage}_metrics.json").write_text(json.dumps(final, indent=2) + "\n")
    if plot:
        from engine.learn.plots import loss_curves, prediction_sheet

        loss_curves(history, out / f"{config.stage}_curves.png", title=f"{config.stage} stage")
        prediction_sheet(model, val_data, config.stage, device, out / f"{config.stage}_predictions.png", norm=norm)
    seconds = time.perf_counter() - t_start
    return TrainReport(ckpt_path, config.stage, steps_run, seconds, rate, final,
                       tuple(p for p in to_remove if not p.name.startswith(config.stage)),
                       rank_images_per_second=rates, parameters_digest=digest)


def check_ranks(config: TrainConfig, ranks: Ranks) -> None:
    """Refuse what several ranks cannot do (yet).

    Raises:
        ConfigError: a batch that does not split evenly, or a data path without rank sharding.
    """
    if ranks.world == 1:
        return
    if ranks.world != ranks.group_size:
        raise ConfigError("train runs its ranks under torchrun (one process group); --shard is for generate")
    if config.batch % ranks.world:
        raise ConfigError(f"--batch {config.batch} (the global batch) must be a multiple of the {ranks.world} ranks")
    if config.cache != "none" or config.source != "store":
        raise ConfigError("several ranks train with --loader dali or torch from the store "
                          "(--cache device and --source online read the whole split on one rank)")


def rank_rows(rows: np.ndarray, ranks: Ranks) -> np.ndarray:
    """This rank's part of a global batch: ``rows[rank::world]``, ``(B / world,) int64``.

    The same interleaving as :class:`engine.learn.epochs.EpochPlan`'s ranks, so
    both loaders split a global batch alike.
    """
    return rows[ranks.rank :: ranks.world]


def _ranks_agree(model: Any, ranks: Ranks, rate: float, device: Any) -> tuple[tuple[float, ...], int]:
    """Every rank's images/s, and the parameters' digest, checked equal on every
    rank (DistributedDataParallel keeps them in sync; a difference is a bug)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    digest = int(h.hexdigest()[:12], 16)  # 48 bits: exact in a float64
    if ranks.world == 1:
        return (), digest
    import torch.distributed as dist

    on = device if dist.get_backend() == "nccl" else "cpu"
    mine = torch.tensor([rate, float(digest)], dtype=torch.float64, device=on)
    every = [torch.zeros_like(mine) for _ in range(ranks.world)]
    dist.all_gather(every, mine)
    if any(int(t[1].item()) != digest for t in every):
        raise RuntimeError("parameters differ across ranks after training")
    return tuple(float(t[0].item()) for t in every), digest


class Validator:
    """Metrics on the periodic subset or the whole held-out split, read as
    training reads: through DALI's graph without augmentation, in order
    (``dali=(store, input_size)``; pipelines built on first use, then reused),
    or :func:`~engine.learn.data.make_batch` over the split's images in memory.

    Call ``validate(subset, constant_log_depth=None)``; ``close()`` at the end.
    """

    def __init__(self, model: Any, stage: str, val_data: Any, val_subset: Any, device: str, dtype: Any,
                 norm: tuple[np.ndarray, np.ndarray], dali: tuple[str, tuple[int, int]] | None = None) -> None:
        self.model, self.stage, self.device, self.dtype, self.norm, self.dali = model, stage, device, dtype, norm, dali
        self.data = {True: val_subset, False: val_data}
        self._pipes: dict[bool, Any] = {}

    def __call__(self, subset: bool, constant_log_depth: float | None = None) -> dict[str, dict[str, float]]:
        from engine.learn.evaluate import DaliEvalBatches, evaluate_arrays, evaluate_batches

        data = self.data[subset]
        if self.dali is None:
            return evaluate_arrays(self.model, data, self.stage, self.device, self.dtype, constant_log_depth,
                                   norm=self.norm)
        if subset not in self._pipes:
            self._pipes[subset] = DaliEvalBatches(self.dali[0], data, self.dali[1], self.device, 64, self.norm)
        return evaluate_batches(self.model, self._pipes[subset], self.stage, self.device, self.dtype,
                                constant_log_depth)

    def close(self) -> None:
        for pipe in self._pipes.values():
            pipe.close()
        self._pipes.clear()


def _graph_step(config: TrainConfig, scaler: Any, model: Any, optimizer: Any, step_loss: Callable[..., Any],
                train_step: Any) -> Any:
    """The :class:`~engine.learn.step_runner.TrainStep` of ``--cuda-graphs``, or
    ``None`` (the plain loop, with the grad scaler). Says why when the step
    cannot be captured: it then runs eagerly, the eager loop's maths exactly."""
    if not config.cuda_graphs:
        return None
    if scaler.is_enabled():
        log.warning("--cuda-graphs: fp16's grad scaler checks for overflow on the host, which a graph cannot "
                    "capture; training eagerly (use --precision bf16 for a captured step)")
        return None
    step = train_step(model, optimizer, step_loss, graph=True)
    if not step.graphed:
        log.warning("--cuda-graphs: CUDA graphs need a CUDA device (training on %s); each step runs eagerly",
                    next(model.parameters()).device.type)
    return step


def _check_same_coarse(built_on: dict[str, Any], config: TrainConfig) -> None:
    """Resuming fine: ``--init`` must still hold the coarse network the run started from."""
    from engine.learn.checkpoint import coarse_fingerprint, load_checkpoint

    if built_on.get("coarse_sha256") is None or config.init is None or not Path(config.init).is_file():
        return
    if coarse_fingerprint(load_checkpoint(config.init)["model"]) != built_on["coarse_sha256"]:
        raise ConfigError(f"{config.init}: not the coarse network {config.checkpoint_path()} was started from "
                          "(coarse retrained since?); train the fine stage again with --overwrite")


def training_loader(config: TrainConfig, train_data: Any, mc: Any, device: Any,
                    norm: tuple[np.ndarray, np.ndarray], samples: SampleSource | None = None,
                    ranks: Ranks | None = None) -> Any:
    """The :class:`~engine.learn.loader.Loader` of the training batches (what
    :func:`engine.loader` returns): the DALI loader, the torch loader over the
    split in memory (or streamed), the device-resident split or online
    compositing, ``config.batch`` the global batch split across ``ranks``."""
    from engine.learn.loader import Loader

    ranks = ranks or Ranks()
    kind = "online" if config.source == "online" else "device" if config.cache == "device" else config.loader
    if kind == "dali":
        from engine.learn.dali_loader import require_dali

        require_dali("--loader dali", "train with --loader torch")
    return Loader(config.data, train_data.index, config.batch, kind=kind, device=str(device),
                  input_size=(mc.height, mc.width), output_size=mc.output_size, mean=tuple(norm[0]),
                  std=tuple(norm[1]), seed=config.seed, rank=ranks.rank, world=ranks.world,
                  stream=config.stream, data=train_data, samples=samples)


def input_normalization(config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)``, ``(3,) float32`` in 0..1 units, for a new coarse run:
    the store's statistics (saved by ``generate`` or ``info --stats``; else one
    pass over the store, not saved), or ImageNet's with ``normalize='imagenet'``."""
    from engine.learn.data import IMAGENET_MEAN, IMAGENET_STD
    from engine.store.stats import channel_stats, read_stats

    if config.normalize == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    stats = read_stats(config.data)
    if stats is None:
        log.info("%s has no saved statistics: one pass over it (info --stats saves them)", config.data)
        stats = channel_stats(config.data)
    return (np.asarray(stats["mean"], np.float32) / 255.0, np.asarray(stats["std"], np.float32) / 255.0)


def _check_resumable(checkpoint: dict[str, Any], config: TrainConfig) -> None:
    saved = checkpoint["train_config"]
    now = dataclasses.asdict(config)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}  # fields newer than the checkpoint
    differ = [k for k in now if k not in TrainConfig.RESUMABLE_CHANGES and saved.get(k, defaults[k]) != now[k]]
    if differ:
        raise ConfigError(f"{config.checkpoint_path()}: trained with different settings ({', '.join(differ)}); "
                          "resume with the same options or start a new --out")
    if checkpoint["step"] >= config.steps:
        raise ConfigError(f"{config.checkpoint_path()}: already at step {checkpoint['step']} of {config.steps}; "
                          "raise --steps to train further")


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def _read_log(path: Path, upto: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = [{k: (float(v) if v not in ("", None) else math.nan) for k, v in r.items()} for r in csv.DictReader(f)]
    return [{k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))} for r in rows
            if r["step"] <= upto]
