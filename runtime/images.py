"""Image I/O for the runtime: Pillow in, float RGB in [-1,1] (+ alpha) out, and back, atomically.

Keeps what the user expects to get back: grayscale stays grayscale, alpha survives (upscaled
separately), 16-bit grayscale stays 16-bit, an RGB or gray ICC profile is carried over (a CMYK one is
converted through, since the output is RGB).
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from clipsr_runtime.atomic import atomic_write
from clipsr_runtime.notices import ClipsrWarning

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # "I" (32-bit) only when its values fit 16 bits
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_GRAY_MODES = ("1", "L", "LA", "La") + _SIXTEEN_BIT
_NO_ALPHA_FORMATS = ("JPEG", "BMP")
_SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")
_FLOAT_SLACK = 1e-3  # rounding overshoot a float pipeline may leave around [0, 1]


@dataclass
class RuntimeImage:
    """An image as the model sees it: rgb (H,W,3) float32 in [-1,1]; alpha (H,W) in [0,1] or None."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    grayscale: bool = False
    icc_profile: bytes | None = None


def _cmyk_to_rgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Through the image's own CMYK profile to sRGB when littleCMS can, else Pillow's plain formula."""
    if not icc:
        return img.convert("RGB")
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without littleCMS
        warnings.warn("CMYK colour profile ignored (Pillow has no ImageCms): converted to RGB without it",
                      ClipsrWarning, stacklevel=4)
        return img.convert("RGB")
    try:
        return ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                         ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        warnings.warn(f"CMYK colour profile not usable ({exc}): converted to RGB without it",
                      ClipsrWarning, stacklevel=4)
        return img.convert("RGB")


def _lab_to_rgb(img: Image.Image) -> Image.Image:
    """CIELAB through littleCMS to sRGB (D50 LAB, as TIFF stores it); refused without ImageCms."""
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without littleCMS
        raise ValueError("a CIELAB image needs Pillow with littleCMS (ImageCms) to convert its colours: "
                         "save it as RGB") from None
    transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    return ImageCms.applyTransform(img, transform)


def _sixteen_bit(img: Image.Image) -> np.ndarray:
    """The gray levels in [0, 1] of a 16-bit image, or of a 32-bit one whose values fit 16 bits; wider
    32-bit values are refused rather than clipped (their meaning, e.g. a count, is not a gray level)."""
    values = np.asarray(img)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise ValueError(f"32-bit integer image with values in [{low}, {high}], outside 16 bits [0, 65535]: "
                         "save it as a 16- or 8-bit image")
    return values.astype(np.float32) / 65535.0


def from_pil(img: Image.Image) -> RuntimeImage:
    """Convert any Pillow mode to a RuntimeImage (EXIF orientation applied)."""
    if img.width < 1 or img.height < 1:
        raise ValueError(f"image has no pixels ({img.width}x{img.height})")
    img = ImageOps.exif_transpose(img)
    icc = img.info.get("icc_profile")
    if img.mode == "CMYK":  # the output is RGB: a CMYK profile would mislabel it
        img, icc = _cmyk_to_rgb(img, icc), None
    if img.mode == "LAB":  # an sRGB result: a LAB profile would mislabel it
        img, icc = _lab_to_rgb(img), None
    if img.mode in _SIXTEEN_BIT:
        gray = _sixteen_bit(img)
        return RuntimeImage(np.repeat(gray[..., None] * 2 - 1, 3, axis=2), None, 16, True, icc)
    if img.mode == "F":
        raise ValueError("floating-point images (mode F) are not supported: save as 8- or 16-bit")
    has_alpha = img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)
    rgba = np.asarray(img.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    alpha = rgba[..., 3].copy() if has_alpha else None
    return RuntimeImage(rgba[..., :3] * 2 - 1, alpha, 8, img.mode in _GRAY_MODES, icc)


def from_array(arr: np.ndarray) -> RuntimeImage:
    """uint8 / uint16 / float in [0,1]; (H,W) gray, (H,W,3) RGB or (H,W,4) RGBA."""
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image array must be (H,W), (H,W,3) or (H,W,4), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"image array is empty (shape {arr.shape})")
    if arr.dtype == np.uint8:
        depth, unit = 8, arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        depth, unit = 16, arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("image array has NaN or infinite values")
        low, high = float(arr.min()), float(arr.max())
        if low < -_FLOAT_SLACK or high > 1 + _FLOAT_SLACK:  # e.g. 0..255 floats: all white once clipped
            raise ValueError(f"float image arrays must be in [0, 1], got [{low:g}, {high:g}]")
        depth, unit = 8, np.clip(arr.astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"image array dtype {arr.dtype} is not supported (uint8, uint16 or float)")
    gray = unit.ndim == 2 or unit.shape[2] == 1
    unit = unit.reshape(unit.shape[0], unit.shape[1], -1)
    rgb = np.repeat(unit, 3, axis=2) if gray else unit[..., :3]
    alpha = unit[..., 3].copy() if unit.shape[2] == 4 else None
    return RuntimeImage(rgb * 2 - 1, alpha, depth, gray)


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) once the EXIF orientation is applied, from the header only (`getexif()` would
    decode a PNG to look for a late eXIf chunk)."""
    exif = Image.Exif()
    if img.info.get("exif"):
        exif.load(img.info["exif"])
    tags = getattr(img, "tag_v2", exif)  # TIFF keeps the orientation among its own tags
    swapped = tags.get(ExifTags.Base.Orientation) in (5, 6, 7, 8)
    return (img.height, img.width) if swapped else (img.width, img.height)


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS,
               before_decode: Callable[[int, int], object] | None = None) -> RuntimeImage:
    """Read an image file; missing, corrupt, non-image or oversized files raise one clear error.

    Pillow opens lazily: the size limits and `before_decode(width, height)` (the caller's own checks,
    e.g. the output size) run on the header, before the pixels are decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > max_pixels:
                    raise ValueError(f"{path}: {img.width}x{img.height} pixels exceeds the limit of "
                                     f"{max_pixels} (decompression bomb?)")
                if before_decode is not None:
                    try:
                        before_decode(*oriented_size(img))
                    except ValueError as exc:
                        raise ValueError(f"{path}: {exc}") from None
                frames = getattr(img, "n_frames", 1)
                img.load()
        if frames > 1:
            warnings.warn(f"{path}: {frames} frames (animated or multi-page): only the first is upscaled",
                          ClipsrWarning, stacklevel=2)
        return from_pil(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"{path}: too many pixels (decompression bomb?): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ValueError(f"{path}: not an image file Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
            ZeroDivisionError, MemoryError, AttributeError, struct.error) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: corrupt or unreadable image ({type(exc).__name__}: {exc})") from exc


def _unit8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def to_pil(image: RuntimeImage) -> Image.Image:
    """Back to Pillow in the input's mode family: L / I;16 / LA / RGB / RGBA."""
    unit = (np.clip(image.rgb, -1, 1) + 1) / 2
    if image.grayscale:
        luma = unit @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if image.bit_depth == 16 and image.alpha is None:
            return Image.fromarray(np.round(np.clip(luma, 0, 1) * 65535).astype(np.uint16))  # I;16
        if image.alpha is not None:
            return Image.fromarray(np.dstack([_unit8(luma), _unit8(image.alpha)]))  # LA
        return Image.fromarray(_unit8(luma))  # L
    if image.alpha is not None:
        return Image.fromarray(np.dstack([_unit8(unit), _unit8(image.alpha)]))  # RGBA
    return Image.fromarray(_unit8(unit))  # RGB


def image_format(path: str | Path) -> str:
    """Pillow format name from the file extension; unknown extension -> clear error."""
    ext = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"{path}: cannot write images with extension {ext!r} (use .png, .jpg, .webp, .tif)")
    return fmt


def _fit_format(img: Image.Image, fmt: str, path: Path) -> Image.Image:
    """Adapt the mode to what the format can hold (alpha flattened on white, 16-bit -> 8-bit)."""
    if img.mode == "I;16" and fmt not in _SIXTEEN_BIT_FORMATS:
        warnings.warn(f"{path}: {fmt} cannot hold 16-bit, writing 8-bit", ClipsrWarning, stacklevel=3)
        img = Image.fromarray((np.asarray(img, dtype=np.float32) / 257).round().astype(np.uint8))
    if img.mode in ("RGBA", "LA") and fmt in _NO_ALPHA_FORMATS:
        warnings.warn(f"{path}: {fmt} has no alpha, flattened on white", ClipsrWarning, stacklevel=3)
        base = Image.new(img.mode[:-1], img.size, "white")
        base.paste(img.convert(img.mode[:-1]), mask=img.getchannel("A"))
        img = base
    return img


def write_image(img: Image.Image, path: str | Path, icc_profile: bytes | None = None, replace: bool = True) -> Path:
    """Write atomically (`clipsr_runtime.atomic`): no partial file, an existing one intact on failure.
    `replace=False`: a file that appeared at `path` meanwhile (another run) is kept, FileExistsError."""
    path = Path(path)
    fmt = image_format(path)
    img = _fit_format(img, fmt, path)
    params = {"icc_profile": icc_profile} if icc_profile else {}
    if fmt == "JPEG":
        params["quality"] = 95
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: output folder {path.parent} does not exist")
    try:
        return atomic_write(path, lambda tmp: img.save(tmp, format=fmt, **params), replace)
    except FileExistsError:
        raise FileExistsError(f"{path} appeared while this image was being upscaled (another run?): kept; "
                              "--overwrite (overwrite=True) replaces it") from None
    except OSError as exc:
        raise OSError(f"{path}: cannot write ({exc.strerror or exc})") from exc
