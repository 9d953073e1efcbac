"""Image files through Pillow, with the checks that keep them from being silently wrong or from
exhausting memory: what a file holds (its mode: channels and bit depth) is read from its header,
without decoding, and checked before anything is decoded.

* Decompression bombs: Pillow refuses images over twice ``Image.MAX_IMAGE_PIXELS`` and only warns
  between once and twice; here the header's size is checked too, so nothing larger than
  :data:`MAX_PIXELS` (Pillow's own default, about 9,459 x 9,459 pixels: 268 MB decoded as RGB) is
  ever decoded; both become a :class:`DataError` naming the file (and the warning is silenced).
* Bit depth: 8-bit images are read as they are; 16-bit ones (``I;16`` grayscale, and 48/64-bit
  RGB(A) PNGs, which Pillow reads by their high bytes) are scaled to 8 bits by their high byte
  (``v >> 8``: 65,535 becomes 255), as TensorFlow's PNG decoder does; 32-bit integer and
  floating-point images (``I``, ``F``) are refused: converting them would clip their values.
* Channels: :func:`channels_of` is the number of channels a file's mode carries (a palette
  image: 3); a file whose channels differ from the spec's input is converted only when the
  recipe asks (``preprocessing.resize``; :mod:`.checks`)."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from .errors import DataError

MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # Pillow modes for the spec's channel counts
PILLOW_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")  # formats.IMAGE_SUFFIXES
MAX_PIXELS = 89_478_485  # Pillow's default limit, kept as our hard one (see the module's doc)
SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N"}
CHANNELS = {"1": 1, "L": 1, **{m: 1 for m in SIXTEEN_BIT}, "LA": 2, "La": 2, "P": 3, "PA": 4, "RGB": 3, "YCbCr": 3,
            "LAB": 3, "HSV": 3, "CMYK": 3, "RGBA": 4, "RGBa": 4, "RGBX": 3}  # fmt: skip
REFUSED = {"I": "32-bit integer", "F": "32-bit floating-point", "I;32": "32-bit integer"}
_GUARDED: list[bool] = []  # whether this process' Pillow has the limit and the warning filter


def _pillow() -> Any:
    """Pillow's Image module, its bomb limit set and its bomb warning made an error (once per
    process: the warning filter is global, and so is what it guards)."""
    from PIL import Image

    if not _GUARDED:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        # open_image refuses what Pillow only warns about; its warning would be noise
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        _GUARDED.append(True)
    return Image


def open_image(path: str, contents: bytes | None = None) -> Any:
    """The Pillow image of ``path`` (header read, nothing decoded), or a DataError naming it."""
    Image = _pillow()
    from PIL import UnidentifiedImageError

    try:
        source = io.BytesIO(contents) if contents is not None else path
        image = Image.open(source, formats=PILLOW_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refused as a decompression bomb ({exc}); at most {MAX_PIXELS:,} pixels an image") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:  # Pillow refuses twice its limit; this, anything over it
        image.close()
        raise DataError(f"{path}: refused as a decompression bomb ({width}x{height} = {width * height:,} pixels, more "
                        f"than {MAX_PIXELS:,}); resize the image")  # fmt: skip
    if image.mode in REFUSED:
        image.close()
        raise DataError(f"{path}: a {REFUSED[image.mode]} image (mode {image.mode}); only 8- and 16-bit images are "
                        "read: convert it to 8-bit PNG or JPEG")  # fmt: skip
    if image.mode not in CHANNELS:
        image.close()
        raise DataError(f"{path}: an image of mode {image.mode}, which resnet-spec does not read; convert it to RGB or L")
    return image


def channels_of(image: Any) -> int:
    return CHANNELS[image.mode]


def describe(image: Any) -> str:
    """``32x32x3`` (height x width x channels) of an opened image."""
    width, height = image.size
    return f"{height}x{width}x{channels_of(image)}"


def decode_image(path: str, channels: int, expect: tuple[int, int, int] | None = None) -> np.ndarray:
    """An image file as (h, w, channels) uint8, converted by Pillow (``L``, ``RGB``, ``RGBA``);
    with ``expect`` (height, width, channels), a file of another size or channel count is refused
    (the recipe did not ask for conversion)."""
    mode = MODES.get(channels)
    if mode is None:
        raise DataError(f"image files hold 1, 3 or 4 channel images; the spec asks for {channels}")
    # The whole file at once, and only the formats image folders hold: for small images
    # Pillow's parsing (dozens of small reads) costs more than the decoding.
    try:
        with open(path, "rb") as handle:
            contents = handle.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None
    with open_image(path, contents) as image:
        if expect is not None:
            require(path, image, expect)
        try:
            array = _pixels(image, mode)
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise DataError(f"{path}: cannot decode image ({exc})") from None
    return array[..., None] if array.ndim == 2 else array


def require(path: str, image: Any, expect: tuple[int, int, int]) -> None:
    """``expect``: (height, width, channels), 0 where anything goes (random-resized crops resize
    training images whatever their size)."""
    height, width, channels = expect
    wrong_size = height and image.size != (width, height)
    if wrong_size or (channels and channels_of(image) != channels):
        raise DataError(mismatch(path, describe(image), expect))


def mismatch(where: str, got: str, expect: tuple[int, int, int]) -> str:
    wanted = "x".join(str(n) if n else "*" for n in expect)
    return (f"{where}: the image is {got} but the spec's input is {wanted} (height x width x channels); set "
            "training.preprocessing.resize: true to resize and convert images, or change the data or `input`")


def _pixels(image: Any, mode: str) -> np.ndarray:
    if image.mode in SIXTEEN_BIT:  # Pillow's conversion to L would clip at 255: scale by the high byte
        from PIL import Image

        image = Image.fromarray((np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8))
    return np.asarray(image if image.mode == mode else image.convert(mode), np.uint8)
