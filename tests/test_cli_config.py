"""Option panels in --help, ``--config FILE.toml``, and ``info --config`` writing a store's options back out."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

import cli
from cli import app
from engine.config import GenerateConfig
from engine.config_file import generate_options, option_key
from tests.small_stores import tree

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--builtin-backgrounds", "2", "--builtin-foregrounds", "2", "--size", "32", "--positions", "2",
        "--shard-size", "4", "-q"]
LONG_COMMANDS = ("generate", "train", "evaluate", "export")
GENERATE_PANELS = [cli.PANEL_INPUT, cli.PANEL_LAYOUT, cli.PANEL_DEPTH, cli.PANEL_BLENDING, cli.PANEL_STORE,
                   cli.PANEL_PERFORMANCE, cli.PANEL_RUNS]

runner = CliRunner()


def _command(name: str):
    return typer.main.get_command(app).commands[name]


def _recorded(store: Path) -> dict:
    from engine.store.zarr_store import read_attrs

    return read_attrs(store)["config"]


@pytest.mark.parametrize("name", LONG_COMMANDS)
def test_every_option_of_the_long_commands_is_in_a_panel(name: str) -> None:
    """A new option without rich_help_panel=... fails here (it would land in 'Other options' of --help)."""
    options = [p for p in _command(name).params if p.param_type_name == "option"]
    assert options
    missing = [p.opts[0] for p in options if getattr(p, "rich_help_panel", None) not in cli.PANEL_ORDER]
    assert not missing, f"{name}: options without a panel of cli.PANEL_ORDER: {missing}"


def test_generate_help_shows_the_panels_in_order_and_each_option_once() -> None:
    result = runner.invoke(app, ["generate", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    headings = [line[:-1] for line in result.output.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == [*GENERATE_PANELS, "Other options"]
    other = result.output.split("Other options:")[1]
    assert "--help" in other and other.count("--") == 1  # only -h/--help stays outside the panels
    for param in _command("generate").params:
        long = next(o for o in param.opts if o.startswith("--"))
        named = [line for line in result.output.splitlines() if re.match(rf"  (-\w, )?{re.escape(long)}(\s|$)", line)]
        assert len(named) == 1, (long, named)


def test_config_file_sets_options_and_the_command_line_wins(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('builtin-backgrounds = 2\nbuiltin_foregrounds = 2\nsize = 32\npositions = 2\nshard-size = 4\n'
                      'limit = 6\nplacement = "uniform"\nobjects-per-image = [1, 2]\nflip = false\nquiet = true\n')
    out = tmp_path / "s.zarr"
    result = runner.invoke(app, ["generate", "--config", str(config), "--out", str(out), "--limit", "5"])
    assert result.exit_code == 0, result.output
    recorded = _recorded(out)
    assert recorded["builtin_backgrounds"] == 2 and recorded["builtin_foregrounds"] == 2  # dashes and underscores
    assert recorded["height"] == 32 and recorded["placement"] == "uniform" and recorded["flip"] is False
    assert (recorded["objects_min"], recorded["objects_max"]) == (1, 2)
    assert recorded["limit"] == 5  # the command line wins over the file's 6
    assert "wrote 5 samples" in result.output


@pytest.mark.parametrize("text, message", [
    ("limt = 4\n", "unknown key 'limt': generate has no option --limt (did you mean 'limit'?)"),
    ("limit = \"4\"\n", "limit = \"4\": needs an integer, got a string"),
    ("limit = 4.5\n", "limit = 4.5: needs an integer, got a float"),
    ("flip = 1\n", "flip = 1: needs true or false, got an integer"),
    ("scale-min = \"small\"\n", "scale-min = \"small\": needs a number, got a string"),
    ("placement = \"diagonal\"\n", "placement = \"diagonal\": must be one of auto, perspective, uniform"),
    ("objects-per-image = [1]\n", "objects-per-image = [1]: needs an array of 2 values, got 1"),
    ("limit = 4\nlimit_ = 5\n", "unknown key 'limit_'"),
    ("limit = 4\nshard_size = 4\nshard-size = 8\n", "keys 'shard_size' and 'shard-size' name the same option"),
    ("[generate]\nlimit = 4\n", "[generate] is a table"),
    ("config = \"other.toml\"\n", "key 'config': a config file cannot name another one"),
    ("limit = \n", "not valid TOML"),
])
def test_bad_config_files_are_one_line_naming_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = runner.invoke(app, ["generate", "--config", str(config), "--out", str(tmp_path / "s.zarr")])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and f"error: {config}: " in result.output and message in result.output, \
        result.output
    assert not (tmp_path / "s.zarr").exists()


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--config", str(tmp_path / "none.toml"), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "none.toml: cannot read the config file" in result.output, result.output


def test_train_takes_a_config_file_too(tmp_path: Path) -> None:
    config = tmp_path / "train.toml"
    config.write_text('steps = 7\ninput_size = "64"\n')
    result = runner.invoke(app, ["train", "--config", str(config), "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "[default: 7]" in result.output and "[default: 64]" in result.output  # the file's values became defaults
    config.write_text("stpes = 7\n")
    result = runner.invoke(app, ["train", "--config", str(config), "--data", "x", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "unknown key 'stpes': train has no option --stpes" in result.output, result.output


def test_info_config_writes_options_that_re_create_the_store_byte_for_byte(tmp_path: Path) -> None:
    first = tmp_path / "first.zarr"
    result = runner.invoke(app, ["generate", *TINY, "--out", str(first), "--width", "48", "--limit", "10",
                                 "--placement", "uniform", "--objects-per-image", "1", "2", "--truncation", "0.2",
                                 "--object-heights", "car=1.4", "--chunk-size", "2", "--seed", "3", "--no-flip"])
    assert result.exit_code == 0, result.output
    config = tmp_path / "first.toml"
    result = runner.invoke(app, ["info", str(first), "--config", str(config)])
    assert result.exit_code == 0 and f"wrote {config}" in result.output, result.output
    written = tomllib.loads(config.read_text())
    assert written["width"] == 48 and written["limit"] == 10 and written["objects-per-image"] == [1, 2]
    assert "--device" in config.read_text() and "not recorded" in config.read_text().lower()
    again = tmp_path / "again.zarr"
    result = runner.invoke(app, ["generate", "--config", str(config), "--out", str(again), "-q"])
    assert result.exit_code == 0, result.output
    assert _recorded(again) == _recorded(first)
    assert tree(again) == tree(first)
    printed = runner.invoke(app, ["info", str(first), "--config", "-"])
    assert printed.exit_code == 0 and tomllib.loads(printed.output) == written


ALL_FIELDS_AWAY_FROM_DEFAULT = dict(
    bg_dir="bgs", fg_dir="fgs", fg_mask_dir="masks", builtin_backgrounds=3, builtin_foregrounds=4, height=40,
    width=56, positions=3, flip=False, scale_min=0.3, scale_max=0.7, placement="perspective", object_height=1.7,
    object_heights=(("car", 1.4), ("trucks/tanker.png", 3.6)), height_jitter=0.2, objects_min=2, objects_max=3,
    max_overlap=0.4, truncation=0.3, limit=11, seed=5, mask_threshold=100, save_alpha=True,
    depth_source="teacher-bg", depth_png_scale=0.002, fg_depth="constant", fg_depth_value=12.5,
    occlusion="background", teacher="net.pt", teacher_output="inverse-depth", teacher_scale=2.5,
    teacher_size=(64, 96), teacher_mean=(0.1, 0.2, 0.3), teacher_std=(0.4, 0.5, 0.6), align_to_ground=True,
    horizon=0.45, camera_height=1.8, focal=300.0, max_depth=70.0, image_codec="jpeg", jpeg_quality=90,
    jpeg_encoder="libjpeg", compression_level=5, shard_size=8, chunk_size=4, max_pixels=1_000_000,
    on_bad_input="skip", blend="poisson", harmonize=True, feather_sigma=3.0, motion_length=5, motion_angle=30.0,
    poisson_iterations=100, poisson_tolerance=1e-4, harmonize_ring=6,
)
#: what the teacher config above cannot hold (--depth-maps goes with bg-maps only)
DEPTH_MAPS = dict(bg_dir="bgs", fg_dir="fgs", depth_source="bg-maps", depth_maps_dir="depths")


def test_the_round_trip_configs_set_every_field_away_from_its_default() -> None:
    defaults = dataclasses.asdict(GenerateConfig())
    unset = set(defaults) - set(ALL_FIELDS_AWAY_FROM_DEFAULT) - set(DEPTH_MAPS)
    same = [k for k, v in {**ALL_FIELDS_AWAY_FROM_DEFAULT, **DEPTH_MAPS}.items() if defaults[k] == v]
    assert not unset and not same, f"a new GenerateConfig field? set it away from its default here: {unset or same}"


@pytest.mark.parametrize("fields", [ALL_FIELDS_AWAY_FROM_DEFAULT, DEPTH_MAPS])
def test_every_recorded_field_round_trips_through_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 fields: dict) -> None:
    """A config written by info --config gives generate the same GenerateConfig back (no store written)."""
    import engine.compose.generate as generate_module

    config = GenerateConfig(**fields)
    path = tmp_path / "all.toml"
    cli._write_run_config({"config": config.to_dict(), "tool_version": "test"}, "s.zarr", path)
    seen = []

    def stop(given: GenerateConfig, *args, **kwargs) -> None:
        seen.append(given)
        raise KeyboardInterrupt  # what generate was given is all this test needs

    monkeypatch.setattr(generate_module, "generate", stop)
    monkeypatch.setattr(cli, "_interrupted", lambda out: "stopped")
    result = runner.invoke(app, ["generate", "--config", str(path), "--out", str(tmp_path / "s.zarr"),
                                 "--device", "cpu"])
    assert seen, result.output
    assert seen[0] == config


def test_generate_options_names_only_generate_options() -> None:
    names = {option_key(o) for p in _command("generate").params for o in p.opts if o.startswith("--")}
    assert set(generate_options(GenerateConfig())) <= names


@pytest.mark.parametrize("command", [["info", "{store}", "--config", "-"],
                                     ["generate", "--config", "{toml}", "--help"]])
def test_config_commands_stay_light(tmp_path: Path, command: list[str]) -> None:
    store = tmp_path / "s.zarr"
    result = runner.invoke(app, ["generate", *TINY, "--limit", "4", "--out", str(store)])
    assert result.exit_code == 0, result.output
    toml = tmp_path / "c.toml"
    toml.write_text("limit = 4\n")
    code = (
        "import sys\n"
        "sys.argv = ['cli.py'] + sys.argv[1:]\n"
        "import cli\n"
        "try:\n    cli.app()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'numba', 'nvidia.dali', 'kornia') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    args = [c.format(store=store, toml=toml) for c in command]
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
