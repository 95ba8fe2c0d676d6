"""TOML config files: reading them, and the values info --config writes."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from engine.config import GenerateConfig
from engine.config_file import generate_options, option_key, read_config_file, toml_value
from engine.errors import ConfigError


def test_option_key_takes_dashes_underscores_and_option_names() -> None:
    assert option_key("builtin_backgrounds") == option_key("--builtin-backgrounds") == "builtin-backgrounds"


def test_read_config_file_keeps_keys_and_values_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('# a run\nlimit = 4000\nbuiltin_backgrounds = 20\nplacement = "uniform"\nflip = false\n')
    assert list(read_config_file(path).items()) == [("limit", 4000), ("builtin_backgrounds", 20),
                                                    ("placement", "uniform"), ("flip", False)]


@pytest.mark.parametrize("content, message", [
    (b"limit = \n", "not valid TOML"),
    (b"[depth]\nmax-depth = 50.0\n", "[depth] is a table"),
    (b"\xff\xfe", "not UTF-8 text"),
])
def test_read_config_file_refuses_what_is_not_a_flat_toml_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"^{path}: .*") as error:
        read_config_file(path)
    assert message in str(error.value)


def test_read_config_file_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="none.toml: cannot read the config file"):
        read_config_file(tmp_path / "none.toml")


@pytest.mark.parametrize("value", ['say "hi"\\ there\n\tnow', "héllo ☃ \x7f", 1e-5, 0.1 + 0.2, 80.0, 7, -3, True, False,
                                   [1, 2], ["a", "b"], math.inf, 2**62])
def test_toml_value_reads_back_exactly(value: object) -> None:
    assert tomllib.loads(f"x = {toml_value(value)}")["x"] == value


def test_toml_value_refuses_what_toml_cannot_hold() -> None:
    with pytest.raises(TypeError):
        toml_value(None)


def test_generate_options_renames_and_joins_fields() -> None:
    config = GenerateConfig(height=32, width=48, objects_min=1, objects_max=3, object_heights=(("car", 1.4),),
                            depth_source="teacher-bg", teacher="net.pt", teacher_size=(64, 96), jpeg_quality=80)
    options = generate_options(config)
    assert options["size"] == 32 and options["width"] == 48 and options["quality"] == 80
    assert options["objects-per-image"] == [1, 3] and options["object-heights"] == "car=1.4"
    assert options["teacher-size"] == "64x96" and options["teacher-mean"] == "0.485,0.456,0.406"
    assert options["bg"] is None and options["limit"] is None
    assert generate_options(GenerateConfig(height=32, width=32))["width"] is None  # square: --size alone
