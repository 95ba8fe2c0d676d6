"""Where the caches live: one place decides it, from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cache_dirs import builtin_cache_dir, cache_home, work_home
from engine.store.location import working_folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("FGBG_CACHE_DIR", raising=False)
    return tmp_path / "home"


def test_defaults_under_home(home: Path) -> None:
    assert cache_home() == home / ".cache" / "fgbg"
    assert builtin_cache_dir() == home / ".cache" / "fgbg" / "builtin"
    assert work_home() == home / ".cache" / "fgbg" / "work"
    assert working_folder("memory://a/b.zarr").parent == work_home()


def test_xdg_cache_home(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert builtin_cache_dir() == tmp_path / "xdg" / "fgbg" / "builtin"
    assert work_home() == tmp_path / "xdg" / "fgbg" / "work"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # ignored, as the XDG spec says
    assert cache_home() == home / ".cache" / "fgbg"


@pytest.mark.parametrize("value", ["off", "OFF", " Off "])
def test_off_disables(home: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FGBG_CACHE_DIR", value)
    assert builtin_cache_dir() is None
    assert work_home() == home / ".cache" / "fgbg" / "work"  # the work folder is another matter


def test_explicit_and_empty(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FGBG_CACHE_DIR", str(tmp_path / "mine"))
    assert builtin_cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("FGBG_CACHE_DIR", "")  # empty counts as unset
    assert builtin_cache_dir() == home / ".cache" / "fgbg" / "builtin"


def test_this_session_never_writes_the_users_cache() -> None:
    """tests/conftest.py points the cache at a temporary folder (subprocesses inherit it)."""
    folder = builtin_cache_dir()
    assert folder is not None and "fgbg-test-cache-" in folder.name
    assert not folder.is_relative_to(Path.home() / ".cache")
