"""The public API: ``from engine import open_store, loader, generate``.

Three entry points over the machinery the CLI uses (``cli.py generate`` calls
:func:`generate`; ``train`` builds its batches with the same
:class:`~engine.learn.loader.Loader` that :func:`loader` returns). Documented,
with shapes and dtypes and examples, in ``docs/api.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.compose.generate import GenerateReport
    from engine.config import GenerateConfig, RunOptions
    from engine.distributed import Ranks
    from engine.learn.loader import Loader
    from engine.store.reader import Store


def open_store(path: str | Path) -> Store:
    """Open an fgbg store for reading (:class:`engine.store.reader.Store`).

    Raises:
        StoreError: no fgbg store at ``path``.
    """
    from engine.store.reader import open_store as _open

    return _open(path)


def loader(store: Store | str | Path, batch_size: int, split: str = "train", *, device: str = "cpu",
           kind: str = "auto", input_size: tuple[int, int] | None = None,
           output_size: tuple[int, int] | None = None, augment: bool | None = None, shuffle: bool | None = None,
           seed: int = 0, rank: int | None = None, world: int | None = None, drop_last: bool | None = None,
           normalize: str | tuple[tuple[float, ...], tuple[float, ...]] = "store", val_fraction: float = 0.1,
           split_seed: int = 0, stream: bool = False, samples: Any = None) -> Loader:
    """Batches of a store's split as dicts of tensors on ``device`` (:class:`engine.learn.loader.Loader`).

    Args:
        store: a :class:`~engine.store.reader.Store` or its path.
        batch_size: samples per step, over all ranks (each gets ``batch_size / world``).
        split: ``train``, ``val`` (held-out backgrounds: ``val_fraction``, ``split_seed``,
            as ``train``) or ``all``.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        kind: ``dali``, ``torch``, ``device``, ``online``, or ``auto`` (``dali`` on a
            GPU, ``torch`` on the CPU).
        input_size: ``(H, W)`` of ``image`` (default: the store's).
        output_size: ``(h, w)`` of ``depth`` and ``mask`` (default: ``input_size``).
        augment: flip and colour gains (default: for ``train`` only).
        shuffle: a seeded order per epoch (default: for ``train`` only).
        seed: of the order and the draws.
        rank, world: this process and how many (default: torchrun's ``RANK`` and ``WORLD_SIZE``).
        drop_last: drop a partial last batch (default: with several ranks).
        normalize: ``store`` (its per-channel statistics), ``imagenet``, or ``(mean, std)`` in 0..1 units.
        stream: ``torch``: read each batch's images from the store instead of loading the split.
        samples: ``online``: the sample source (default: one built from the store's own settings).

    Returns:
        A :class:`~engine.learn.loader.Loader`: ``len()`` batches per epoch, iterating
        yields ``{"image": (B, 3, H, W) float32, "depth": (B, 1, h, w) float32,
        "mask": (B, 1, h, w) bool}``; ``state_dict()``/``load_state_dict()`` resume exactly.

    Raises:
        ConfigError: options that cannot work together. StoreError: an unusable store.
    """
    import numpy as np

    from engine.learn.loader import Loader, torchrun_rank
    from engine.store.reader import Store

    store = store if isinstance(store, Store) else Store(store)
    index = store.split(split, val_fraction, split_seed)
    training = split == "train"
    if kind == "auto":
        kind = "dali" if str(device).startswith("cuda") else "torch"
    env_rank, env_world = torchrun_rank()
    if isinstance(normalize, str):
        if normalize == "imagenet":
            from engine.learn.data import IMAGENET_MEAN, IMAGENET_STD

            mean, std = tuple(IMAGENET_MEAN.tolist()), tuple(IMAGENET_STD.tolist())
        elif normalize == "store":
            stats = store.channel_stats()
            mean = tuple((np.asarray(stats["mean"], np.float32) / 255.0).tolist())
            std = tuple((np.asarray(stats["std"], np.float32) / 255.0).tolist())
        else:
            raise ConfigError(f"normalize must be store, imagenet or (mean, std), got {normalize!r}")
    else:
        mean, std = normalize
    if kind == "online" and samples is None:
        from engine.compose.online import OnlineSamples

        samples = OnlineSamples(store.config, device=device)
        samples.fill_atlas()
    return Loader(store.path, index, batch_size, kind=kind, device=device, input_size=input_size or store.size,
                  output_size=output_size, mean=mean, std=std, augment=training if augment is None else augment,
                  shuffle=training if shuffle is None else shuffle, seed=seed,
                  rank=env_rank if rank is None else rank, world=env_world if world is None else world,
                  drop_last=drop_last, stream=stream, samples=samples)


def generate(config: GenerateConfig, out: str | Path, run: RunOptions | None = None,
             progress: Callable[[int, int, int], None] | None = None, notice: Callable[[str], None] | None = None,
             ranks: Ranks | None = None) -> GenerateReport:
    """Make (or, with ``run.resume``, complete) the store at ``out``: what ``cli.py generate`` runs.

    Args:
        config: what to make (:class:`engine.config.GenerateConfig`, one field per
            ``generate`` option; saved in the store).
        out: the store's folder (or an fsspec URL).
        run: how to run it (:class:`engine.config.RunOptions`: overwrite, resume,
            device, threads…; default: a new store on the CPU).
        progress: called with ``(samples just finished, samples done, samples in the store)``.
        notice: receives one-line messages before the work starts (size, free space).
        ranks: several processes writing one store (:func:`engine.distributed.discover`; default: one).

    Returns:
        The run's :class:`~engine.compose.generate.GenerateReport` (samples, seconds, rates, skipped inputs).

    Raises:
        InputError, ConfigError, StoreError: the library's one-line errors.
    """
    from engine.compose.generate import generate as _generate

    return _generate(config, out, run, progress=progress, notice=notice, ranks=ranks)
