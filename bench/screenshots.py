"""1280x720 screenshots of a phone wallet showing a member's barcode (and maybe its QR).

What a customer sends when they hold up or upload a screenshot: status bar, app bar,
a white card with text around the codes, a bottom navigation bar. The codes themselves
come from the product's own renderers, pasted in pixel for pixel.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFont

from patron.identity.images import barcode_png, qr_png

WIDTH, HEIGHT = 1280, 720
CARD_BOX = (40, 140, WIDTH - 40, 660)
TEXT_COLUMN = (80, 520)  # x range of the text-like noise on the card
PHOTO_SIZE = (420, 160)
BACKGROUND_VARIANTS = 8

_WORDS = ("Points", "balance", "Member", "since", "2019", "Gold", "tier", "Show", "this",
          "code", "at", "the", "register", "Valid", "today", "Coupons", "3", "available")


class ScreenshotPainter:
    """Paints screenshots; the backgrounds are drawn once, the member's codes per picture."""

    def __init__(self, rng: random.Random, *, merchant_name: str) -> None:
        self._rng = rng
        self._font = ImageFont.load_default(size=22)
        self._backgrounds = [self._background(merchant_name) for _ in range(BACKGROUND_VARIANTS)]

    def png(self, *, member_number: str, qr_token: str | None) -> bytes:
        image = self._rng.choice(self._backgrounds).copy()
        draw = ImageDraw.Draw(image)
        draw.text((TEXT_COLUMN[0], 170), f"Member No. {member_number}", fill=(40, 40, 40),
                  font=self._font)
        jitter_x, jitter_y = self._rng.randint(-20, 20), self._rng.randint(-20, 20)
        image.paste(_open(barcode_png(member_number)), (560 + jitter_x, 330 + jitter_y))
        if qr_token is not None:
            image.paste(_open(qr_png(qr_token)), (900 + jitter_x, 230 + jitter_y))
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    def _background(self, merchant_name: str) -> Image.Image:
        shade = self._rng.randint(236, 248)
        image = Image.new("RGB", (WIDTH, HEIGHT), (shade, shade, shade + 2))
        draw = ImageDraw.Draw(image)
        self._status_bar(draw)
        draw.rectangle((0, 32, WIDTH, 112), fill=(34, 87, 160))
        draw.text((40, 58), merchant_name, fill=(255, 255, 255), font=self._font)
        draw.rounded_rectangle(_shifted(CARD_BOX, 4), radius=24, fill=(210, 210, 214))
        draw.rounded_rectangle(CARD_BOX, radius=24, fill=(255, 255, 255))
        self._text_lines(draw, top=220, bottom=440)
        image.paste(self._photo(PHOTO_SIZE), (TEXT_COLUMN[0], 460))
        self._navigation_bar(draw)
        return image

    def _photo(self, size: tuple[int, int]) -> Image.Image:
        # A promotion picture: smooth colour areas with grain, which PNG cannot squeeze.
        coarse = Image.frombytes("RGB", (12, 6), self._rng.randbytes(12 * 6 * 3))
        smooth = coarse.resize(size, Image.Resampling.BICUBIC)
        grain = Image.effect_noise(size, 24).convert("RGB")
        return Image.blend(smooth, grain, 0.2)

    def _status_bar(self, draw: ImageDraw.ImageDraw) -> None:
        draw.rectangle((0, 0, WIDTH, 32), fill=(18, 18, 18))
        draw.text((24, 6), f"{self._rng.randint(7, 22)}:{self._rng.randint(0, 59):02d}",
                  fill=(255, 255, 255), font=self._font)
        for index in range(3):
            left = WIDTH - 120 + index * 32
            draw.rectangle((left, 10, left + 22, 22), fill=(220, 220, 220))

    def _text_lines(self, draw: ImageDraw.ImageDraw, *, top: int, bottom: int) -> None:
        y = top
        while y < bottom:
            if self._rng.random() < 0.4:
                words = " ".join(self._rng.choice(_WORDS) for _ in range(self._rng.randint(2, 5)))
                draw.text((TEXT_COLUMN[0], y), words, fill=(90, 90, 90), font=self._font)
            else:
                self._word_blocks(draw, y)
            y += self._rng.randint(28, 40)

    def _word_blocks(self, draw: ImageDraw.ImageDraw, y: int) -> None:
        # Grey blocks the size of words: body text seen from far enough away.
        x = TEXT_COLUMN[0]
        while True:
            width = self._rng.randint(18, 90)
            if x + width > TEXT_COLUMN[1]:
                return
            grey = self._rng.randint(110, 170)
            draw.rectangle((x, y, x + width, y + self._rng.randint(10, 14)), fill=(grey,) * 3)
            x += width + self._rng.randint(8, 14)

    def _navigation_bar(self, draw: ImageDraw.ImageDraw) -> None:
        draw.rectangle((0, 676, WIDTH, HEIGHT), fill=(250, 250, 250))
        for index in range(4):
            centre = WIDTH * (2 * index + 1) // 8
            draw.rounded_rectangle((centre - 14, 686, centre + 14, 710), radius=6,
                                   fill=(150, 150, 150))


def _open(png: bytes) -> Image.Image:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB")


def _shifted(box: tuple[int, int, int, int], by: int) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    return left + by, top + by, right + by, bottom + by
