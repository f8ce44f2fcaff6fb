"""Image reading/writing of the runtime: modes survive, bad files give one clear error, writes are atomic."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from clipsr_runtime.images import from_array, read_image, to_pil, write_image


def _rgb(h=12, w=20, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_exif_orientation_applied(tmp_path):
    arr = _rgb(10, 30)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    loaded = read_image(tmp_path / "r.jpg")
    assert loaded.rgb.shape == (30, 10, 3)  # width and height swapped


@pytest.mark.parametrize("mode,gray,alpha", [("L", True, False), ("LA", True, True), ("RGB", False, False),
                                             ("RGBA", False, True), ("P", False, False), ("1", True, False)])
def test_modes_round_trip(tmp_path, mode, gray, alpha):
    rng = np.random.default_rng(1)
    src = Image.fromarray(np.dstack([_rgb(), rng.integers(0, 256, (12, 20, 1), dtype=np.uint8)]), "RGBA")
    img = (src if alpha else src.convert("RGB")).convert(mode)
    img.save(tmp_path / "in.png")
    loaded = read_image(tmp_path / "in.png")
    assert loaded.grayscale is gray and (loaded.alpha is not None) is alpha and loaded.bit_depth == 8
    assert loaded.rgb.dtype == np.float32 and -1 <= loaded.rgb.min() and loaded.rgb.max() <= 1
    write_image(to_pil(loaded), tmp_path / "out.png")
    back = Image.open(tmp_path / "out.png")
    expected_mode = {"L": "L", "1": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "P": "RGB"}[mode]
    assert back.mode == expected_mode
    np.testing.assert_array_equal(np.asarray(back), np.asarray(img.convert(expected_mode)))


def test_palette_with_transparency_keeps_alpha(tmp_path):
    img = Image.fromarray(_rgb()).convert("P")
    img.info["transparency"] = 0
    img.save(tmp_path / "p.png", transparency=0)
    assert read_image(tmp_path / "p.png").alpha is not None


def test_sixteen_bit_png_stays_sixteen_bit(tmp_path):
    arr = (np.arange(12 * 20, dtype=np.uint16).reshape(12, 20) * 271).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    loaded = read_image(tmp_path / "g16.png")
    assert loaded.bit_depth == 16 and loaded.grayscale
    write_image(to_pil(loaded), tmp_path / "o16.png")
    back = Image.open(tmp_path / "o16.png")
    assert back.mode.startswith("I")
    np.testing.assert_array_equal(np.asarray(back).astype(np.uint16), arr)  # exact, not 8-bit rounded


def test_sixteen_bit_to_jpeg_warns_and_writes_8_bit(tmp_path):
    img = from_array(np.full((4, 4), 40000, np.uint16))
    with pytest.warns(UserWarning, match="16-bit"):
        write_image(to_pil(img), tmp_path / "o.jpg")
    assert Image.open(tmp_path / "o.jpg").mode == "L"


def test_alpha_flattened_on_white_for_jpeg(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)  # black, fully transparent
    with pytest.warns(UserWarning, match="flattened"):
        write_image(to_pil(from_array(arr)), tmp_path / "o.jpg")
    assert np.asarray(Image.open(tmp_path / "o.jpg")).min() > 240


def test_icc_profile_carried(tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(_rgb()).save(tmp_path / "c.png", icc_profile=icc)
    loaded = read_image(tmp_path / "c.png")
    write_image(to_pil(loaded), tmp_path / "o.png", loaded.icc_profile)
    assert Image.open(tmp_path / "o.png").info.get("icc_profile") == icc


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_non_image_and_corrupt(tmp_path):
    (tmp_path / "notes.png").write_text("hello, not an image")
    with pytest.raises(ValueError, match="not an image"):
        read_image(tmp_path / "notes.png")
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="cut.png: corrupt"):
        read_image(tmp_path / "cut.png")


def test_decompression_bomb(tmp_path):
    Image.new("L", (400, 300)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match="exceeds the limit of 100000"):
        read_image(tmp_path / "big.png", max_pixels=100_000)
    assert read_image(tmp_path / "big.png", max_pixels=120_000).rgb.shape == (300, 400, 3)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=512), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a",
                                                 b"RIFF\x00\x00\x00\x00WEBP", b"II*\x00", b"BM"]))
def test_fuzz_reader_only_raises_the_clear_error(tmp_path_factory, data, magic):
    path = tmp_path_factory.mktemp("fuzz") / "f.img"
    path.write_bytes(magic + data)
    try:
        img = read_image(path)
    except ValueError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert img.rgb.ndim == 3 and np.isfinite(img.rgb).all()


def test_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match="extension '.xyz'"):
        write_image(Image.new("RGB", (2, 2)), tmp_path / "o.xyz")


def test_unwritable_folder_leaves_nothing(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user that can write anywhere (root)")
        with pytest.raises(OSError, match="cannot write"):
            write_image(Image.new("RGB", (2, 2)), folder / "o.png")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_replace_failure_leaves_no_temp_file(tmp_path):
    (tmp_path / "o.png").mkdir()  # the target is a folder: os.replace fails after the data is written
    with pytest.raises(OSError, match="o.png: cannot write"):
        write_image(Image.new("RGB", (2, 2)), tmp_path / "o.png")
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"] and not any((tmp_path / "o.png").iterdir())


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "o.png"
    target.write_bytes(b"previous")

    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="o.png: cannot write"):
        write_image(Image.new("RGB", (2, 2)), target)
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["o.png"]


def test_write_permissions_follow_umask(tmp_path):
    out = write_image(Image.new("RGB", (2, 2)), tmp_path / "o.png")
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


# --- odd inputs: CMYK, arrays, animation, header-only checks ---------------------------------------

def _cmyk_jpeg(path, icc: bytes | None = None):
    cmyk = Image.fromarray(_rgb(16, 16)).convert("CMYK")
    cmyk.save(path, "JPEG", quality=95, **({"icc_profile": icc} if icc else {}))
    return cmyk


def test_cmyk_jpeg_becomes_rgb_without_its_cmyk_profile(tmp_path):
    _cmyk_jpeg(tmp_path / "plain.jpg")
    plain = read_image(tmp_path / "plain.jpg")
    assert plain.icc_profile is None and plain.rgb.shape == (16, 16, 3) and not plain.grayscale
    expected = np.asarray(Image.open(tmp_path / "plain.jpg").convert("RGB"), np.float32) / 255 * 2 - 1
    np.testing.assert_allclose(plain.rgb, expected, atol=1e-6)


def test_cmyk_with_an_unusable_profile_warns_and_drops_it(tmp_path):
    ImageCms = pytest.importorskip("PIL.ImageCms")
    rgb_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # wrong colour space
    _cmyk_jpeg(tmp_path / "tagged.jpg", icc=rgb_profile)
    assert Image.open(tmp_path / "tagged.jpg").info.get("icc_profile") == rgb_profile
    with pytest.warns(UserWarning, match="CMYK colour profile not usable"):
        loaded = read_image(tmp_path / "tagged.jpg")
    assert loaded.icc_profile is None
    out = write_image(to_pil(loaded), tmp_path / "out.png", loaded.icc_profile)
    assert Image.open(out).mode == "RGB" and "icc_profile" not in Image.open(out).info


def test_cmyk_profile_is_applied_when_littlecms_can(tmp_path, monkeypatch):
    ImageCms = pytest.importorskip("PIL.ImageCms")
    calls = []

    def convert(img, src, dst, outputMode):
        calls.append((img.mode, outputMode))
        return Image.new("RGB", img.size, (10, 20, 30))

    monkeypatch.setattr(ImageCms, "profileToProfile", convert)
    monkeypatch.setattr(ImageCms, "ImageCmsProfile", lambda data: data)
    _cmyk_jpeg(tmp_path / "tagged.jpg", icc=b"a cmyk profile")
    loaded = read_image(tmp_path / "tagged.jpg")
    assert calls == [("CMYK", "RGB")] and loaded.icc_profile is None
    np.testing.assert_allclose(loaded.rgb[0, 0], np.array([10, 20, 30]) / 255 * 2 - 1, atol=1e-6)


@pytest.mark.parametrize("arr, message", [
    (np.full((8, 8, 3), np.nan, np.float32), "NaN or infinite"),
    (np.array([[0.5, np.inf]] * 4, np.float64), "NaN or infinite"),
    (np.zeros((0, 5, 3), np.uint8), "empty"),
    (np.zeros((4, 0), np.float32), "empty"),
    (np.zeros((0, 0, 4), np.uint16), "empty"),
    (np.full((4, 4, 3), 255.0, np.float32), r"must be in \[0, 1\], got \[255, 255\]"),
    (np.full((4, 4), -0.5, np.float32), r"must be in \[0, 1\]"),
    (np.zeros((4, 4, 3), bool), "dtype bool is not supported"),
])
def test_bad_arrays_are_refused(arr, message):
    with pytest.raises(ValueError, match=message):
        from_array(arr)


def test_float_rounding_overshoot_is_accepted():
    image = from_array(np.full((4, 4, 3), 1.0004, np.float32))
    assert image.rgb.max() == pytest.approx(1.0)


def test_empty_pil_image_is_refused():
    from clipsr_runtime.images import from_pil

    with pytest.raises(ValueError, match="no pixels"):
        from_pil(Image.new("RGB", (0, 4)))


def test_animated_gif_warns_first_frame_only(tmp_path):
    frames = [Image.new("RGB", (6, 4), colour) for colour in ("red", "green", "blue", "white")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="4 frames .* only the first is upscaled"):
        read_image(tmp_path / "a.gif")
    Image.new("RGB", (6, 4)).save(tmp_path / "still.gif")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "still.gif")


def test_before_decode_sees_the_oriented_header_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: a 20x12 file is a 12x20 image
    Image.fromarray(_rgb(12, 20)).save(tmp_path / "r.jpg", exif=exif.tobytes())
    seen = []
    image = read_image(tmp_path / "r.jpg", before_decode=lambda w, h: seen.append((w, h)))
    assert seen == [(12, 20)] and image.rgb.shape[:2] == (20, 12)

    def refuse(w, h):
        raise ValueError("too big for me")

    with pytest.raises(ValueError, match=r"r\.jpg: too big for me"):
        read_image(tmp_path / "r.jpg", before_decode=refuse)


def test_a_cielab_tiff_keeps_its_colours(tmp_path):
    from PIL import ImageCms

    colours = np.array([[[128, 128, 128], [200, 30, 30]], [[30, 160, 60], [20, 40, 220]]], np.uint8)
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    ImageCms.applyTransform(Image.fromarray(colours), to_lab).save(tmp_path / "lab.tif")
    assert Image.open(tmp_path / "lab.tif").mode == "LAB"
    loaded = read_image(tmp_path / "lab.tif")
    assert np.abs((loaded.rgb + 1) * 127.5 - colours).max() < 8 and not loaded.grayscale  # 8-bit LAB steps


def test_32_bit_integer_images_fit_16_bits_or_are_refused(tmp_path):
    levels = np.array([[0, 1000], [40000, 65535]], np.int32)
    Image.fromarray(levels, "I").save(tmp_path / "fits.tif")
    loaded = read_image(tmp_path / "fits.tif")
    assert loaded.bit_depth == 16 and np.allclose((loaded.rgb[..., 0] + 1) / 2 * 65535, levels, atol=0.5)
    Image.fromarray(levels * 4, "I").save(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match=r"wide.tif: .*values in \[0, 262140\], outside 16 bits"):
        read_image(tmp_path / "wide.tif")
    Image.fromarray(levels - 5, "I").save(tmp_path / "negative.tif")
    with pytest.raises(ValueError, match=r"values in \[-5, 65530\]"):
        read_image(tmp_path / "negative.tif")
