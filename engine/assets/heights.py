"""Real heights of the foregrounds, in metres (perspective placement).

A foreground's height comes from, first match wins:

1. ``--object-heights`` naming the file (its recorded name, ``trucks/tanker.png``,
   or that name without its extension, ``trucks/tanker``);
2. ``--object-heights`` naming its category (its folder path below ``--fg``, ``trucks``,
   or ``vehicles/trucks`` for ``--fg/vehicles/trucks/tanker.png``: :func:`category_of`);
3. the same two in :data:`HEIGHTS_FILE` at the top of ``--fg`` (file, then category);
4. ``--object-height``.

So the command line overrides the folder's file, and within each a file's
entry overrides its folder's. A key that is both a category and a file's
name without extension (``trucks`` for ``trucks.png`` and ``trucks/``) means
the category (name the file with its extension). Built-in foregrounds are named ``builtin:car/00001``;
``car/00001`` names one of them too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from engine.assets.images import HEIGHTS_FILE, InputFile, category_of
from engine.errors import ConfigError, InputError

__all__ = ["HEIGHTS_FILE", "parse_heights", "read_heights_file", "resolve_heights"]
#: the largest height accepted, metres (as ``--object-height``)
MAX_HEIGHT = 1000.0

Entries = Sequence[tuple[str, float]]


def parse_heights(text: str, source: str) -> tuple[tuple[str, float], ...]:
    """``name,metres`` lines → ``((name, metres), ...)`` in file order.

    Blank lines and lines starting with ``#`` are skipped; a first line
    ``name,metres`` is a header. Names use ``/`` between folders.

    Args:
        text: the file's contents.
        source: what to call the file in messages (its path).

    Raises:
        ConfigError: a line that is not ``name,metres`` with ``0 < metres <= 1000``,
            or a name given twice; the message names ``source`` and the line number.
    """
    entries: list[tuple[str, float]] = []
    seen: dict[str, int] = {}
    first = True
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        header, first = first and stripped.replace(" ", "").lower() == "name,metres", False
        if header:
            continue
        name, comma, value = stripped.rpartition(",")
        name = name.strip().replace("\\", "/").strip("/")
        try:
            metres = float(value)
        except ValueError:
            metres = math.nan
        if not comma or not name or not 0 < metres <= MAX_HEIGHT:
            raise ConfigError(f"{source}, line {number}: expected NAME,METRES with 0 < METRES <= {MAX_HEIGHT:g}, "
                              f"got {line.strip()!r}")
        if name in seen:
            raise ConfigError(f"{source}, line {number}: {name} already given on line {seen[name]}")
        seen[name] = number
        entries.append((name, metres))
    return tuple(entries)


def read_heights_file(fg_dir: str | Path) -> tuple[tuple[tuple[str, float], ...], InputFile] | None:
    """The entries of ``fg_dir``/:data:`HEIGHTS_FILE` and its input record, or ``None`` without one.

    Raises:
        InputError: the file exists but cannot be read or is not UTF-8.
        ConfigError: a bad line (see :func:`parse_heights`).
    """
    path = Path(fg_dir) / HEIGHTS_FILE
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except OSError as e:
        raise InputError(path, f"cannot read file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a UTF-8 text file of NAME,METRES lines") from None
    return parse_heights(text, str(path)), InputFile(HEIGHTS_FILE, hashlib.sha256(data).hexdigest())


def _file_keys(name: str) -> tuple[str, ...]:
    """The keys that name the foreground recorded as ``name``: with and without
    its extension, and without the ``builtin:`` prefix."""
    bare = name.split(":", 1)[1] if name.startswith("builtin:") else name
    keys = {name, bare}
    for key in (name, bare):
        path = PurePosixPath(key)
        if path.suffix:
            keys.add(str(path.with_suffix("")))
    return tuple(sorted(keys))


def _match(entries: Entries, names: Sequence[str], source: str) -> tuple[list[float | None], list[float | None]]:
    """Per foreground, the height ``entries`` give its file and its category (``None``: none)."""
    categories = [category_of(n) for n in names]
    known_categories = set(categories)
    by_key: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        for key in _file_keys(name):
            by_key.setdefault(key, []).append(i)
    per_file: list[float | None] = [None] * len(names)
    per_category: list[float | None] = [None] * len(names)
    unknown = []
    for key, metres in entries:
        if key in known_categories:  # a category first (a/b: the folder fg/a/b/), as export names it
            for i, c in enumerate(categories):
                if c == key:
                    per_category[i] = metres
        elif key in by_key:
            for i in by_key[key]:
                per_file[i] = metres
        else:
            unknown.append(key)
    if unknown:
        shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
        raise ConfigError(f"{source}: no foreground or category named {', '.join(sorted(unknown))} "
                          f"(categories: {', '.join(sorted(known_categories))}; foregrounds: {shown}; "
                          "a category is the folder path below --fg, a/b for --fg/a/b/x.png; "
                          "a foreground its path below --fg)")
    return per_file, per_category


def resolve_heights(
    names: Sequence[str],
    default: float,
    command_line: Entries = (),
    from_file: Entries = (),
    file_source: str = HEIGHTS_FILE,
) -> np.ndarray:
    """``(NF,) float64`` metres per foreground, by the precedence of the module docstring.

    Args:
        names: the foregrounds' recorded names (``InputFile.name``), in order.
        default: ``--object-height``.
        command_line: ``--object-heights`` entries ``(key, metres)``.
        from_file: :data:`HEIGHTS_FILE` entries.
        file_source: what to call that file in messages.

    Raises:
        ConfigError: a key naming no foreground and no category (the message
            says where the key came from and lists what exists).
    """
    cli_file, cli_category = _match(command_line, names, "--object-heights")
    csv_file, csv_category = _match(from_file, names, file_source)
    out = np.full(len(names), float(default))
    for i in range(len(names)):
        for metres in (cli_file[i], cli_category[i], csv_file[i], csv_category[i]):
            if metres is not None:
                out[i] = metres
                break
    return out
