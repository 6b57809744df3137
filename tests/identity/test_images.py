"""The member-code PNGs must decode with the same reader that identifies images."""

from __future__ import annotations

import pytest

from patron.identity.images import barcode_png, decode_image_bytes, qr_png
from patron.identity.numbers import format_member_number


@pytest.mark.parametrize("merchant_number, customer_no", [
    (10001, 1), (12345, 18), (54321, 9_999_999), (99999, 1), (0, 4_242_424)])
def test_barcode_png_decodes_to_the_member_number(merchant_number: int,
                                                  customer_no: int) -> None:
    number = format_member_number(merchant_number, customer_no)

    decoded = decode_image_bytes(barcode_png(number))

    assert [(code.format, code.text) for code in decoded] == [("barcode", number)]


def test_qr_png_decodes_to_the_token() -> None:
    token = "10001000000142.58000000.ABCDEFGHIJKLMNOP"

    decoded = decode_image_bytes(qr_png(token))

    assert [(code.format, code.text) for code in decoded] == [("qr", token)]


def _rasterise_rect_svg(svg: bytes, scale: int = 4) -> bytes:
    """Draw the SVG's bars (path segments "Mx yhWvHh-WZ", all a barcode is) into a PNG."""
    import io
    import re

    from PIL import Image, ImageDraw

    text = svg.decode()
    width, height = (float(v) for v in re.search(
        r'<svg width="([\d.]+)" height="([\d.]+)"', text).groups())
    image = Image.new("L", (int(width * scale), int(height * scale)), 255)
    draw = ImageDraw.Draw(image)
    bars = re.findall(r"M([\d.]+) ([\d.]+)h([\d.]+)v([\d.]+)h-[\d.]+Z", text)
    assert len(bars) > 20
    for x, y, w, h in bars:
        x0, y0 = float(x) * scale, float(y) * scale
        draw.rectangle([x0, y0, x0 + float(w) * scale - 1, y0 + float(h) * scale - 1], fill=0)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("merchant_number, customer_no", [(99999, 1), (12345, 18), (0, 42)])
def test_barcode_svg_encodes_the_member_number(merchant_number: int, customer_no: int) -> None:
    from patron.identity.images import barcode_svg

    number = format_member_number(merchant_number, customer_no)
    decoded = decode_image_bytes(_rasterise_rect_svg(barcode_svg(number)))
    assert [(code.format, code.text) for code in decoded] == [("barcode", number)]
