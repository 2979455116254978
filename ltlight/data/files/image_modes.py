"""Every image mode a file may hold, as the 8-bit RGB the networks are trained on.

Pillow's own ``convert("RGB")`` is right for 8-bit images (greyscale, palette, CMYK, YCbCr) but
not for the others, which it clips or reads without their transparency. Here:

* **16-bit integers** (``I;16``: 16-bit PNG and TIFF greyscale) keep their range: ``v >> 8``
  maps 0 … 65535 onto 0 … 255. ``I`` (32-bit integers) whose values lie in 0 … 65535 is
  16-bit data too; other ``I`` images follow the float rule.
* **floats** (``F``: float TIFF) are scaled by their value range: values in [0, 1] are
  multiplied by 255, values in [0, 255] kept, any other range stretched from its minimum to its
  maximum (a constant image becomes black). An image with a NaN or an infinite value has no
  range to scale and is refused (a ``ValueError``: the loader names the file).
* **transparency** (``RGBA``, ``LA``, ``PA``, a palette or greyscale image with a transparent
  colour, GIF's included) is composited on a **white** background (:data:`BACKGROUND`), as an
  image viewer shows it; the colours stored under fully transparent pixels are never seen.
* a **GIF**'s first frame is the image (Pillow opens a file on frame 0).

Every conversion is a pure function of the pixels, so a crop of the result is the same whichever
worker decodes it.
"""

import numpy as np
from PIL import Image

#: The colour transparent pixels are composited on.
BACKGROUND = (255, 255, 255)

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as an 8-bit ``RGB`` image (see the module docstring for each mode).

    Raises:
        ValueError: a float image holds NaN or infinite values.

    Example:
        >>> image = Image.new("I;16", (2, 1), 65535)
        >>> to_rgb(image).getpixel((0, 0))
        (255, 255, 255)
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT:
        return _grey(np.asarray(image).astype(np.uint16) >> 8)
    if mode in ("I", "F"):
        values = np.asarray(image)
        if mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535:
            return _grey(values >> 8)
        return _grey(_float_to_8bit(values.astype(np.float64)))
    if mode in _ALPHA or "transparency" in image.info:
        background = Image.new("RGBA", image.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def _float_to_8bit(values: np.ndarray) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ValueError(
            "a float image with NaN or infinite values has no value range to scale to 0..255"
        )
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low >= 0.0 and high <= 1.0:
        values = values * 255.0
    elif low < 0.0 or high > 255.0:
        values = (values - low) * (255.0 / (high - low)) if high > low else values * 0.0
    return np.rint(values)


def _grey(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.uint8)).convert("RGB")
