"""A depth network given by the user as a local file (no downloads, ever).

A teacher maps an ``(N, 3, h, w)`` float batch to an ``(N, 1, h', w')`` map of
depth or inverse depth. It is a TorchScript module (``torch.jit.save``), a
``torch.export`` program (``torch.export.save``; exported for a fixed batch
size unless its batch dimension is dynamic), or an ONNX file (run with
onnxruntime when that is installed). Inputs are scaled to
``[0, 1]``, normalised with ``mean``/``std``, and resized to ``input_size``
when one is given; outputs are resized back to the image size, turned into
metres (``depth = scale * y`` or ``scale / y``) and checked.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InputError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TeacherOptions:
    """How to feed the teacher and read its output.

    Attributes:
        output: ``depth`` or ``inverse-depth``.
        scale: metres per output unit (``depth``) or its inverse's numerator.
        input_size: ``(h, w)`` to resize inputs to, or ``None`` for the image size.
        mean, std: per-channel normalisation of ``[0, 1]`` RGB inputs.
        batch: images per forward pass.
    """

    output: str = "depth"
    scale: float = 1.0
    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    batch: int = 32


class Teacher:
    """A loaded teacher network. Use :meth:`load`, then call it on images."""

    def __init__(self, path: Path, kind: str, model: Any, options: TeacherOptions, device: str) -> None:
        self.path, self.kind, self.model, self.options, self.device = path, kind, model, options, device

    @classmethod
    def load(cls, path: str | Path, options: TeacherOptions, device: str = "cpu") -> Teacher:
        """Load a TorchScript or ONNX teacher.

        Raises:
            InputError: missing file, or neither TorchScript nor ONNX.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "teacher file does not exist")
        if zipfile.is_zipfile(path):  # TorchScript and torch.export archives are zip files
            import torch

            with warnings.catch_warnings():  # torch 2.14 deprecates TorchScript; users' files still work
                warnings.simplefilter("ignore", FutureWarning)
                try:
                    model = torch.jit.load(str(path), map_location=device).eval()
                    return cls(path, "torchscript", model, options, device)
                except Exception:  # noqa: BLE001 - maybe a torch.export archive instead
                    pass
            export_log = logging.getLogger("torch.export")  # it logs a traceback before raising
            level = export_log.level
            export_log.setLevel(logging.CRITICAL)
            try:
                program = torch.export.load(str(path))
                return cls(path, "torch.export", program.module().to(device), options, device)
            except Exception as e:  # noqa: BLE001 - any load failure is the file's fault here
                raise InputError(path, f"not a loadable TorchScript or torch.export model ({type(e).__name__})") from None
            finally:
                export_log.setLevel(level)
        try:
            import onnxruntime
        except ImportError:
            raise InputError(path, "not a TorchScript archive, and ONNX teachers need onnxruntime "
                                   "(pip install onnxruntime)") from None
        try:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
            available = set(onnxruntime.get_available_providers())
            session = onnxruntime.InferenceSession(str(path), providers=[p for p in providers if p in available])
        except Exception:  # noqa: BLE001
            raise InputError(path, "not a TorchScript or ONNX model") from None
        return cls(path, "onnx", session, options, device)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Depth of each image.

        Args:
            images: ``(N, H, W, 3) uint8`` RGB.

        Returns:
            ``(N, H, W) float32`` metres (positive, finite).

        Raises:
            InputError: the network returned the wrong shape, or non-finite or
                non-positive values.
        """
        import torch
        import torch.nn.functional as F

        n, height, width, _ = images.shape
        o = self.options
        out = np.empty((n, height, width), np.float32)
        mean = torch.tensor(o.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(o.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        for start in range(0, n, o.batch):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + o.batch])).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0).sub_(mean).div_(std)  # (b, 3, H, W)
            if o.input_size is not None and tuple(o.input_size) != (height, width):
                x = F.interpolate(x, size=o.input_size, mode="bilinear", align_corners=False, antialias=True)
            y = self._forward(x)  # (b, 1, h', w') float32
            y = F.interpolate(y, size=(height, width), mode="bilinear", align_corners=False)
            out[start : start + len(x)] = y[:, 0].float().cpu().numpy()
        if not np.isfinite(out).all():
            raise InputError(self.path, "teacher returned NaN or infinite values")
        if o.output == "inverse-depth":
            if (out <= 0).any():
                raise InputError(self.path, "teacher returned inverse depth <= 0 (is --teacher-output right?)")
            return (o.scale / out).astype(np.float32)
        if (out <= 0).any():
            raise InputError(self.path, "teacher returned depth <= 0 (is --teacher-output right?)")
        return (o.scale * out).astype(np.float32)

    def _forward(self, x: Any) -> Any:
        import torch

        if self.kind == "onnx":
            name = self.model.get_inputs()[0].name
            y = torch.from_numpy(np.asarray(self.model.run(None, {name: x.cpu().numpy()})[0]))
        else:
            with torch.no_grad(), _autocast(self.device):
                y = self.model(x)
            if not isinstance(y, torch.Tensor):
                raise InputError(self.path, f"teacher returned {type(y).__name__}, expected a tensor")
        if y.ndim != 4 or y.shape[0] != x.shape[0] or y.shape[1] != 1:
            raise InputError(self.path, f"teacher returned shape {tuple(y.shape)} for input {tuple(x.shape)}; "
                                        "expected (N, 1, h, w)")
        return y.float().to(x.device)


def _autocast(device: str) -> Any:
    """bf16 autocast on GPUs that have it, fp16 otherwise; none on the CPU."""
    import contextlib

    import torch

    if device != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)
