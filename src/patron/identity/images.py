"""Rendering member codes (Code 128 barcode, QR) and decoding them from photos."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import segno

# zxing-cpp, Pillow and NumPy are imported where a code is drawn or read: the server's
# start does not pay for them (docs/architecture.md, "Start-up").

# A 1280x720 screenshot is ~1 MP; 40 MP is far beyond any phone camera and guards memory.
MAX_IMAGE_PIXELS = 40_000_000


class ImageDecodeError(ValueError):
    pass


def barcode_svg(number: str) -> bytes:
    # zxing-cpp draws it too (python-barcode drops a leading "99" from Code 128 data).
    import zxingcpp

    symbol = zxingcpp.create_barcode(number, zxingcpp.BarcodeFormat.Code128)
    return symbol.to_svg(add_hrt=True).encode()


def barcode_png(number: str) -> bytes:
    # Drawn by zxing-cpp in whole-pixel modules: python-barcode's ImageWriter put bars at
    # fractional pixels (1.575 px at 200 dpi), and zxing-cpp could not read them back.
    import numpy as np
    import zxingcpp
    from PIL import Image

    symbol = zxingcpp.create_barcode(number, zxingcpp.BarcodeFormat.Code128)
    out = io.BytesIO()
    Image.fromarray(np.asarray(symbol.to_image(scale=2, add_hrt=True))).save(out, format="PNG")
    return out.getvalue()


def qr_svg(text: str) -> bytes:
    out = io.BytesIO()
    segno.make_qr(text, error="m").save(out, kind="svg", scale=8, border=4)
    return out.getvalue()


def qr_png(text: str) -> bytes:
    out = io.BytesIO()
    segno.make_qr(text, error="m").save(out, kind="png", scale=8, border=4)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class DecodedCode:
    format: str  # "barcode" (1-D) or "qr"
    text: str


def decode_image_base64(data: str) -> list[DecodedCode]:
    """Decode every barcode and QR code in a base64 PNG or JPEG (data: URLs accepted)."""
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError("image is not valid base64") from exc
    return decode_image_bytes(raw)


def decode_image_bytes(raw: bytes) -> list[DecodedCode]:
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            if image.format not in ("PNG", "JPEG"):
                raise ImageDecodeError("image must be PNG or JPEG")
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ImageDecodeError("image is too large")
            gray = image.convert("L")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError("image could not be read as PNG or JPEG") from exc
    formats = [zxingcpp.BarcodeFormat.QRCode, zxingcpp.BarcodeFormat.Code128]
    results = zxingcpp.read_barcodes(gray, formats=formats)  # type: ignore[arg-type]
    decoded = []
    for result in results:
        kind = "qr" if result.format == zxingcpp.BarcodeFormat.QRCode else "barcode"
        decoded.append(DecodedCode(kind, result.text))
    return decoded
