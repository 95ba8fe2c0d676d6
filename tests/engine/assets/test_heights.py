"""Heights per foreground: --object-heights by file or category, and --fg's heights.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.assets.heights import HEIGHTS_FILE, parse_heights, read_heights_file, resolve_heights
from engine.errors import ConfigError, InputError

NAMES = ["a.png", "trucks/tanker.png", "trucks/van.png", "people/p.jpg", "trucks/heavy/crane.png"]


def test_precedence_file_over_folder_over_default() -> None:
    metres = resolve_heights(NAMES, 1.5, command_line=(("trucks", 3.0), ("trucks/tanker.png", 3.6)))
    np.testing.assert_array_equal(metres, [1.5, 3.6, 3.0, 1.5, 1.5])  # heavy/crane's category is "heavy"
    # the order of the entries does not matter: a file's entry wins either way
    again = resolve_heights(NAMES, 1.5, command_line=(("trucks/tanker.png", 3.6), ("trucks", 3.0)))
    np.testing.assert_array_equal(again, metres)


def test_names_without_their_extension_and_top_level_files() -> None:
    metres = resolve_heights(NAMES, 1.5, command_line=(("trucks/tanker", 3.6), ("a", 0.5), ("trucks/heavy", 4.0)))
    np.testing.assert_array_equal(metres, [0.5, 3.6, 1.5, 1.5, 4.0])
    builtin = ["builtin:car/00000", "builtin:car/00001"]
    np.testing.assert_array_equal(resolve_heights(builtin, 1.5, (("car/00001", 1.2),)), [1.5, 1.2])
    np.testing.assert_array_equal(resolve_heights(builtin, 1.5, (("builtin:car/00000", 1.4),)), [1.4, 1.5])


def test_a_bare_key_that_is_a_category_and_a_file_means_the_category() -> None:
    names = ["trucks.png", "trucks/t.png"]
    np.testing.assert_array_equal(resolve_heights(names, 1.5, (("trucks", 3.0),)), [1.5, 3.0])
    np.testing.assert_array_equal(resolve_heights(names, 1.5, (("trucks.png", 2.0),)), [2.0, 1.5])


def test_command_line_wins_over_the_heights_file() -> None:
    from_file = (("trucks", 3.2), ("trucks/van.png", 2.2), ("people", 1.7), ("a", 1.0))
    metres = resolve_heights(NAMES, 1.5, command_line=(("trucks", 3.0),), from_file=from_file)
    # the command line's category beats the file's per-file entry; the file fills in the rest
    np.testing.assert_array_equal(metres, [1.0, 3.0, 3.0, 1.7, 1.5])
    np.testing.assert_array_equal(resolve_heights(NAMES, 1.5, from_file=from_file), [1.0, 3.2, 2.2, 1.7, 1.5])


def test_unknown_names_are_listed_with_what_exists() -> None:
    with pytest.raises(ConfigError, match=r"--object-heights: no foreground or category named bikes, trucks/x\.png "
                                          r"\(categories: object, people, trucks, trucks/heavy; foregrounds: a\.png"):
        resolve_heights(NAMES, 1.5, command_line=(("trucks/x.png", 1.0), ("bikes", 1.0)))
    with pytest.raises(ConfigError, match=r"^fg/heights\.csv: no foreground or category named nope"):
        resolve_heights(NAMES, 1.5, from_file=(("nope", 1.0),), file_source="fg/heights.csv")


def test_parse_heights_file() -> None:
    text = "\ufeffname,metres\n# comment\n\ntrucks , 3.2\ntrucks/van.png,2.2\r\nweird, name.png,1.0\n"
    assert parse_heights(text, "h.csv") == (("trucks", 3.2), ("trucks/van.png", 2.2), ("weird, name.png", 1.0))
    assert parse_heights("", "h.csv") == ()


@pytest.mark.parametrize("text, line", [
    ("trucks,3\ntrucks 3\n", 2), ("a,0\n", 1), ("a,-1\n", 1), ("a,1001\n", 1), ("a,nan\n", 1), (",2\n", 1),
    ("# c\na,x\n", 2), ("a,1\nname,metres\n", 2), ("a,1\nb,2\na,3\n", 3),
])
def test_a_bad_line_is_one_config_error_naming_the_file_and_line(text: str, line: int) -> None:
    with pytest.raises(ConfigError, match=rf"^fg/heights\.csv, line {line}: ") as info:
        parse_heights(text, "fg/heights.csv")
    assert "\n" not in str(info.value)


def test_read_heights_file(tmp_path: Path) -> None:
    assert read_heights_file(tmp_path) is None
    (tmp_path / HEIGHTS_FILE).write_text("people,1.75\n")
    entries, record = read_heights_file(tmp_path)
    assert entries == (("people", 1.75),) and record.name == HEIGHTS_FILE and len(record.sha256) == 64
    (tmp_path / HEIGHTS_FILE).write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="heights.csv: not a UTF-8 text file"):
        read_heights_file(tmp_path)
    (tmp_path / HEIGHTS_FILE).write_text("people,tall\n")
    with pytest.raises(ConfigError, match=r"heights\.csv, line 1: expected NAME,METRES"):
        read_heights_file(tmp_path)
