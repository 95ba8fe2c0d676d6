"""Less per-step overhead for small models: a fused optimiser and a CUDA-graph train step.

A small network's step is dozens of tiny kernels, each launched from Python;
the GPU then waits on the host. Two reducers:

- :func:`make_sgd`: ``torch.optim.SGD(..., fused=True)`` (one kernel for every
  parameter's update) where the installed torch has fused kernels for the
  device, else the ``foreach`` implementation (a few multi-tensor kernels).
- :class:`TrainStep`: on CUDA, the whole step (forward, loss, backward,
  optimiser) captured once into a CUDA graph with static input buffers, then
  replayed: one launch per step. Every call is a real training step: the
  first ``warmup`` run eagerly (on a side stream, as capture requires), the
  next captures and replays. On the CPU, or with ``graph=False``, every step
  runs eagerly, the same computation.

Limits of the graphed step: shapes must be static (a batch of another shape
runs eagerly; use ``drop_last``), the learning rate is baked in at capture
unless given as a tensor, and no ``GradScaler`` (its host-side checks cannot be
captured).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)


def fused_devices() -> set[str]:
    """Device types the installed torch has fused optimiser kernels for (a seam:
    tests fake it). torch keeps the list in a private helper; without it, CUDA."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return set(_get_fused_kernels_supported_devices())
    except ImportError:  # pragma: no cover - older or newer torch
        return {"cuda"}


def optimizer_mode(params: list[torch.Tensor]) -> str:
    """``fused`` when every parameter is a floating-point tensor on one device
    type with fused kernels, else ``foreach``."""
    types = {p.device.type for p in params}
    if len(types) == 1 and types <= fused_devices() and all(p.is_floating_point() for p in params):
        return "fused"
    return "foreach"


def make_sgd(groups: Iterable[Any], **kwargs: Any) -> tuple[torch.optim.SGD, str]:
    """``torch.optim.SGD(groups, **kwargs)``, fused where supported.

    Args:
        groups: parameters or parameter groups (dicts with ``params``).
        kwargs: SGD's options (``lr``, ``momentum``, ``weight_decay``…).

    Returns:
        ``(optimizer, mode)`` with mode ``fused`` or ``foreach``. A torch that
        refuses ``fused`` for these parameters falls back to ``foreach``.
    """
    import torch

    groups = list(groups)
    params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    mode = optimizer_mode(params)
    if mode == "fused":
        try:
            return torch.optim.SGD(groups, fused=True, **kwargs), "fused"
        except (RuntimeError, TypeError, ValueError) as e:  # torch's own checks (dtype, device, old versions)
            log.info("fused SGD not available here (%s); using foreach", e)
    return torch.optim.SGD(groups, foreach=True, **kwargs), "foreach"


class TrainStep:
    """One training step, CUDA-graphed where it can be.

    Args:
        model: the network (its parameters on ``device``).
        optimizer: its optimiser (``make_sgd``'s, or any that can be captured).
        loss_fn: ``(model, x, depth, masks) -> loss`` (a 0-d tensor).
        graph: capture on CUDA (ignored elsewhere: eager).
        warmup: eager steps before the capture (CUDA graphs need the lazy
            state, e.g. momentum buffers and cuDNN plans, to exist first).

    Call with a batch: ``step(x, depth, masks) -> loss`` (detached, on the device).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[..., torch.Tensor], graph: bool = True, warmup: int = 3) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        device = next(model.parameters()).device
        self.graphed = graph and device.type == "cuda"
        self.warmup = max(1, warmup)
        self.steps = 0
        self._graph: Any = None
        self._static: tuple[torch.Tensor, ...] | None = None
        self._loss: torch.Tensor | None = None

    @property
    def mode(self) -> str:
        """``cuda-graph`` once captured, else ``eager``."""
        return "cuda-graph" if self._graph is not None else "eager"

    def __call__(self, *batch: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        if not self.graphed:
            return self._eager(batch)
        if self._graph is None and self.steps <= self.warmup:
            return self._side_stream(batch)
        if self._graph is None:
            self._capture(batch)
        elif [t.shape for t in batch] != [t.shape for t in self._static]:  # type: ignore[union-attr]
            return self._eager(batch)  # e.g. a partial last batch: the graph's buffers have fixed shapes
        for static, t in zip(self._static, batch):  # type: ignore[arg-type]
            static.copy_(t, non_blocking=True)
        self._graph.replay()
        return self._loss.detach().clone()  # type: ignore[union-attr]  # the static loss is overwritten next replay

    def _eager(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model, *batch)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _side_stream(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        import torch

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            loss = self._eager(batch)
        torch.cuda.current_stream().wait_stream(stream)
        return loss

    def _capture(self, batch: tuple[torch.Tensor, ...]) -> None:
        """Capture the whole step on static copies of ``batch``'s buffers (not run:
        the caller replays it for this batch)."""
        import torch

        self._static = tuple(torch.empty_like(t) for t in batch)
        for static, t in zip(self._static, batch):
            static.copy_(t)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # grads are allocated inside the graph's pool
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            loss = self.loss_fn(self.model, *self._static)
            loss.backward()
            self.optimizer.step()
        self._graph, self._loss = graph, loss
        log.info("train step captured into a CUDA graph after %d eager steps", self.steps - 1)
