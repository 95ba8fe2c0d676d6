"""Run configs as TOML files: read one, and write a store's recorded config back out.

A config file holds ``option = value`` lines named like a command's long
options (``builtin-backgrounds = 20`` or ``builtin_backgrounds = 20``); the CLI
turns them into the command's defaults, so the command line still wins. This
module knows TOML and the mapping between :class:`GenerateConfig` fields and
``generate``'s option names; it imports nothing heavy (``info`` stays light).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path
from typing import Any

from engine.config import GenerateConfig
from engine.errors import ConfigError

#: GenerateConfig fields whose option has another name (the rest: the field with dashes)
_OPTION_OF_FIELD = {
    "bg_dir": "bg", "fg_dir": "fg", "fg_mask_dir": "fg-masks", "depth_maps_dir": "depth-maps",
    "height": "size", "jpeg_quality": "quality",
}


def option_key(name: str) -> str:
    """A config key or option name in one spelling: ``builtin_backgrounds`` and
    ``--builtin-backgrounds`` both give ``builtin-backgrounds``."""
    return name.removeprefix("--").replace("_", "-")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The ``key = value`` pairs of a TOML config file, in file order.

    Args:
        path: a TOML file of top-level ``option = value`` lines (no tables).

    Returns:
        ``{key: value}`` with each key as written (dashes or underscores).

    Raises:
        ConfigError: the file cannot be read, is not TOML, or holds a table.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a TOML config file (not UTF-8 text)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    for key, value in data.items():
        if isinstance(value, dict):
            raise ConfigError(f"{path}: [{key}] is a table; a config file holds top-level `option = value` lines only")
    return data


def generate_options(config: GenerateConfig) -> dict[str, Any]:
    """``generate``'s options that re-create ``config``, keyed by long option name.

    Args:
        config: a store's recorded config (``GenerateConfig.from_dict(attrs["config"])``).

    Returns:
        ``{option name: value}`` in the config's field order: TOML-ready values
        (str, int, float, bool, list), or ``None`` for an option left unset
        (its default; TOML has no null). Every field of the config is covered.
    """
    values = dataclasses.asdict(config)
    options: dict[str, Any] = {}
    for field, value in values.items():
        if field == "width":
            options["width"] = None if value == config.height else value  # --width: only when not square
        elif field == "objects_min":
            options["objects-per-image"] = [config.objects_min, config.objects_max]
        elif field == "objects_max":
            continue
        elif field == "object_heights":
            options["object-heights"] = ",".join(f"{name}={metres!r}" for name, metres in value) or None
        elif field == "teacher_size":
            options["teacher-size"] = None if value is None else f"{value[0]}x{value[1]}"
        elif field in ("teacher_mean", "teacher_std"):
            options[option_key(field)] = ",".join(repr(float(v)) for v in value)
        else:
            options[_OPTION_OF_FIELD.get(field, option_key(field))] = value
    return options


def toml_value(value: Any) -> str:
    """One TOML value: str, bool, int, float or a list of them (floats exact: ``repr``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        # a JSON string is a TOML basic string, but for DEL, which TOML wants escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}: {value!r}")
