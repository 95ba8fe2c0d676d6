"""Loading user folders: every bad-input case named in the generate issue."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.assets.images import canonical_foreground, load_backgrounds, load_foregrounds
from engine.errors import InputError


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode).save(path)
    return path


def car(h: int = 30, w: int = 50, seed: int = 0) -> np.ndarray:
    rgba = np.random.default_rng(seed).integers(0, 256, (h + 10, w + 6, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    rgba[5 : 5 + h, 3 : 3 + w, 3] = 255
    rgba[5, 3 : 3 + w, 3] = 100  # a soft top edge
    return rgba


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` pixels (valid CRC, no data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    bg, fg = tmp_path / "bg", tmp_path / "fg"
    bg.mkdir()
    fg.mkdir()
    rng = np.random.default_rng(1)
    save(bg / "street1.jpg", rng.integers(0, 256, (90, 160, 3), dtype=np.uint8))
    save(bg / "street2.png", rng.integers(0, 256, (200, 120, 3), dtype=np.uint8))
    save(fg / "car1.png", car(seed=1))
    save(fg / "car2.png", car(20, 70, seed=2))
    return bg, fg


def test_backgrounds_are_cropped_and_resized(folders: tuple[Path, Path]) -> None:
    images, files, skipped = load_backgrounds(folders[0], 32, 48, 10**7)
    assert images.shape == (2, 32, 48, 3) and images.dtype == np.uint8
    assert [f.name for f in files] == ["street1.jpg", "street2.png"]
    assert all(len(f.sha256) == 64 for f in files) and not skipped


def test_hidden_files_are_ignored(folders: tuple[Path, Path]) -> None:
    (folders[0] / ".DS_Store").write_bytes(b"junk")
    assert len(load_backgrounds(folders[0], 32, 48, 10**7)[0]) == 2


def test_foregrounds_are_cropped_tight_to_alpha(folders: tuple[Path, Path]) -> None:
    fgs, files, _ = load_foregrounds(folders[1], None, 224, 224, 10**7)
    assert [f.shape for f in fgs] == [(30, 50, 4), (20, 70, 4)]
    assert fgs[0][0, :, 3].max() == 100 and fgs[0][-1, :, 3].max() == 255


def test_large_foregrounds_shrink_into_the_canonical_box() -> None:
    out = canonical_foreground(np.full((400, 100, 4), 255, np.uint8), 64, 64)
    assert out.shape == (64, 16, 4)
    wide = canonical_foreground(np.full((100, 1000, 4), 255, np.uint8), 64, 64)
    assert wide.shape == (19, 192, 4)  # width capped at 3 x 64


def test_rgb_foreground_with_mask_folder(tmp_path: Path) -> None:
    fg, masks = tmp_path / "fg", tmp_path / "masks"
    fg.mkdir()
    masks.mkdir()
    save(fg / "a.jpg", np.full((40, 60, 3), 200, np.uint8))
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 5:55] = 255
    save(masks / "a.png", mask)
    fgs, files, _ = load_foregrounds(fg, masks, 224, 224, 10**7)
    assert fgs[0].shape == (20, 50, 4) and files[0].mask == "a.png"


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: (d / "notes.txt").write_text("hello"), "not an image"),
        (lambda d: (d / "cut.png").write_bytes(_truncated_png()), "truncated or corrupt"),
        (lambda d: (d / "bomb.png").write_bytes(huge_png_header(30000, 30000)), "decompression bomb"),
        (lambda d: (d / "big.png").write_bytes(huge_png_header(5000, 5000)), "more than --max-pixels"),
    ],
)
def test_bad_background_files_name_the_file(folders: tuple[Path, Path], make, reason: str) -> None:
    make(folders[0])
    with pytest.raises(InputError, match=reason) as e:
        load_backgrounds(folders[0], 32, 48, max_pixels=10**7)
    assert e.value.path.parent == folders[0]
    # skip mode leaves it out and lists it
    images, _, skipped = load_backgrounds(folders[0], 32, 48, 10**7, on_bad_input="skip")
    assert len(images) == 2 and len(skipped) == 1 and reason.split()[0] in skipped[0].reason


def _truncated_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()[:600]


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_backgrounds(tmp_path / "nope", 32, 32, 10**7)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        load_backgrounds(tmp_path / "empty", 32, 32, 10**7)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(InputError, match="not a folder"):
        load_backgrounds(tmp_path / "file.png", 32, 32, 10**7)


def test_all_bad_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    (tmp_path / "bg").mkdir()
    (tmp_path / "bg" / "a.txt").write_text("x")
    with pytest.raises(InputError, match="no usable backgrounds"):
        load_backgrounds(tmp_path / "bg", 32, 32, 10**7, on_bad_input="skip")


def test_foreground_without_alpha_or_mask(folders: tuple[Path, Path]) -> None:
    save(folders[1] / "flat.jpg", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(InputError, match="flat.jpg: foreground has no alpha channel"):
        load_foregrounds(folders[1], None, 64, 64, 10**7)


def test_foreground_with_all_zero_alpha(folders: tuple[Path, Path]) -> None:
    save(folders[1] / "ghost.png", np.zeros((20, 20, 4), np.uint8))
    with pytest.raises(InputError, match="ghost.png: alpha is zero everywhere"):
        load_foregrounds(folders[1], None, 64, 64, 10**7)


def test_mask_of_the_wrong_size(tmp_path: Path) -> None:
    fg, masks = tmp_path / "fg", tmp_path / "masks"
    fg.mkdir()
    masks.mkdir()
    save(fg / "a.jpg", np.zeros((40, 60, 3), np.uint8))
    save(masks / "a.png", np.full((41, 60), 255, np.uint8))
    with pytest.raises(InputError, match="a.png: mask is 60x41 but its image a.jpg is 60x40"):
        load_foregrounds(fg, masks, 64, 64, 10**7)


def test_unreadable_file_names_the_file(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.read_bytes

    def deny(self: Path) -> bytes:
        if self.name == "street2.png":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(InputError, match="street2.png: cannot read file \\(Permission denied\\)"):
        load_backgrounds(folders[0], 32, 48, 10**7)


def test_foreground_sub_folders_are_categories(folders: tuple[Path, Path], tmp_path: Path) -> None:
    """Files in sub-folders load too, named by their relative path; masks pair by relative stem."""
    from engine.assets.images import category_of

    fg = folders[1]
    (fg / "vans").mkdir()
    (fg / "vans" / ".hidden").mkdir()
    save(fg / "vans" / "v1.png", car(25, 60, seed=3))
    save(fg / "vans" / ".hidden" / "x.png", car(seed=4))
    rgb = car(25, 40, seed=5)
    (fg / "people").mkdir()
    save(fg / "people" / "car1.jpg", rgb[..., :3])  # same stem as a top-level file: its own mask
    masks = tmp_path / "masks"
    (masks / "people").mkdir(parents=True)
    save(masks / "people" / "car1.png", rgb[..., 3])
    fgs, files, _ = load_foregrounds(fg, masks, 224, 224, 10**7)
    assert [f.name for f in files] == ["car1.png", "car2.png", "people/car1.jpg", "vans/v1.png"]
    assert files[2].mask == "people/car1.png" and files[0].mask is None
    assert fgs[2].shape == (25, 40, 4) and fgs[3].shape == (25, 60, 4)
    assert [category_of(f.name) for f in files] == ["object", "object", "people", "vans"]


# -- high bit depth: converted by the type's range, not clipped at 255 ---------------------------


def png_rgb16(path: Path, rgb: np.ndarray) -> Path:
    """Write ``(h, w, 3) uint16`` as a 16-bit RGB PNG (Pillow cannot write one)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = rgb.shape[:2]
    raw = b"".join(b"\x00" + rgb[r].astype(">u2").tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.parametrize("kind", ["png16", "tiff16", "tiff16b", "int32", "float01"])
def test_high_bit_depth_backgrounds_keep_their_brightness(tmp_path: Path, kind: str) -> None:
    grey = np.full((20, 20), 0.5)  # mid-grey in every encoding
    if kind == "png16":
        Image.fromarray((grey * 65535).astype(np.uint16)).save(tmp_path / "a.png")
    elif kind == "tiff16":
        Image.fromarray((grey * 65535).astype(np.uint16)).save(tmp_path / "a.tif")
    elif kind == "tiff16b":
        Image.fromarray((grey * 65535).astype(">u2")).save(tmp_path / "a.tif")
    elif kind == "int32":
        Image.fromarray((grey * 65535).astype(np.int32)).save(tmp_path / "a.tif")
    else:
        Image.fromarray(grey.astype(np.float32)).save(tmp_path / "a.tif")
    images, _, _ = load_backgrounds(tmp_path, 16, 16, 10**6)
    assert abs(float(images.mean()) - 127.5) <= 1.0, images.mean()  # was 255 (I;16) or 0 (F): clipped


def test_high_bit_depth_uses_the_type_range_not_the_image_range(tmp_path: Path) -> None:
    dark = np.full((20, 20), 4096, np.uint16)  # a dark 16-bit image stays dark (not stretched to white)
    dark[0, 0] = 8192
    Image.fromarray(dark).save(tmp_path / "a.png")
    images, _, _ = load_backgrounds(tmp_path, 20, 20, 10**6)
    assert abs(float(np.median(images)) - 4096 * 255 / 65535) <= 1.0


def test_float_images_outside_0_1_use_their_own_range(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(-3.0, 7.0, 20, dtype=np.float32), (20, 1))
    Image.fromarray(ramp).save(tmp_path / "a.tif")
    images, _, _ = load_backgrounds(tmp_path, 20, 20, 10**6)
    assert images[..., 0].min() <= 2 and images[..., 0].max() >= 253


def test_rgb16_png_backgrounds_keep_their_brightness(tmp_path: Path) -> None:
    png_rgb16(tmp_path / "a.png", np.full((20, 20, 3), 32768, np.uint16))
    images, _, _ = load_backgrounds(tmp_path, 16, 16, 10**6)
    assert abs(float(images.mean()) - 128) <= 1.0


def test_high_bit_depth_foregrounds_and_masks(tmp_path: Path) -> None:
    fg, masks = tmp_path / "fg", tmp_path / "m"
    fg.mkdir()
    masks.mkdir()
    Image.fromarray(np.full((20, 20), 32768, np.uint16)).save(fg / "a.png")  # 16-bit grey object
    mask = np.zeros((20, 20), np.uint16)
    mask[5:15, 5:15] = 65535
    Image.fromarray(mask).save(masks / "a.png")  # 16-bit mask: 65535 is opaque
    images, _, _ = load_foregrounds(fg, masks, 64, 64, 10**6)
    assert images[0].shape[:2] == (10, 10)
    assert abs(float(images[0][..., :3].mean()) - 127.5) <= 1.0 and (images[0][..., 3] == 255).all()


def test_a_tiny_background_is_upscaled_with_a_warning(tmp_path: Path, caplog) -> None:
    save(tmp_path / "dot.png", np.full((1, 1, 3), 90, np.uint8))
    save(tmp_path / "fine.png", np.full((64, 64, 3), 90, np.uint8))
    with caplog.at_level("WARNING"):
        images, _, _ = load_backgrounds(tmp_path, 32, 32, 10**6)
    assert images.shape == (2, 32, 32, 3)
    assert "1 background(s) enlarged more than 4x" in caplog.text and "dot.png (1x1, 32x)" in caplog.text
    assert "fine.png" not in caplog.text


def test_every_bad_foreground_is_listed_under_skip(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"not a png")
    save(tmp_path / "b.png", np.zeros((8, 8, 3), np.uint8))  # no alpha, no mask
    with pytest.raises(InputError, match=r"no usable foregrounds: all 2 files are bad.*a\.png \(not an image.*"
                                         r"b\.png \(foreground has no alpha"):
        load_foregrounds(tmp_path, None, 32, 32, 10**6, on_bad_input="skip")
