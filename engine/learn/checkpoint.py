"""Checkpoints: everything needed to evaluate, predict, or continue exactly.

A checkpoint is one ``torch.save`` file holding the model weights, its
:class:`~engine.learn.model.ModelConfig`, the training config, the optimiser and
grad-scaler states, the step, and the random states (torch, CUDA, NumPy,
Python). It is written atomically (temp file, fsync, rename): a run killed
while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from engine.errors import InputError

FORMAT = "fgbg-eigen-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus a format tag) to ``path`` atomically."""
    import torch

    from engine.store.zarr_store import atomic_write

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    atomic_write(Path(path), buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        InputError: missing, unreadable, or not an fgbg checkpoint.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle is the file's problem
        raise InputError(path, f"not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(path, "not an fgbg checkpoint")
    if data.get("version") != VERSION:
        raise InputError(path, f"checkpoint version {data.get('version')} is not supported")
    return data


def coarse_fingerprint(state_dict: dict[str, Any]) -> str:
    """SHA-256 of the coarse network's weights in a model ``state_dict``.

    What a fine checkpoint records of the coarse one it was built on: the
    weights themselves, so re-saving the same network keeps the fingerprint
    and retraining it changes it.
    """
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name in sorted(k for k in state_dict if k.startswith("coarse.")):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
