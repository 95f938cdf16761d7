#!/usr/bin/env python3
"""Pixel references from Pillow, the decoder transformers reads images with.

Writes image files of the kinds users benchmark (JPEG at every chroma
subsampling, progressive, with restart markers, grayscale, CMYK/YCCK, EXIF
orientation; PNG at 1, 8 and 16 bits with and without alpha, palettes; WebP;
GIF) and, for each, the pixels transformers' `load_image` gets from it:
`ImageOps.exif_transpose(Image.open(path)).convert("RGB")`, saved as an 8-bit
RGB PNG. `manifest.json` lists the pairs. The host's decoder must give the
same bytes (host/imaging/tests/pillow.rs).

Pinned (python 3.11): pillow==12.0.0 (libjpeg-turbo 3.1.2) numpy
    python3 -m venv .venv-pixels
    .venv-pixels/bin/pip install pillow==12.0.0 numpy
    .venv-pixels/bin/python tests/golden/make_pixels.py tests/golden/pixels
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/golden/pixels"
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(7)


def picture(w, h):
    """Smooth colour ramps with fine noise and sharp edges: what chroma
    subsampling and upsampling get wrong shows."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1)).astype(np.int32)
    g = (y * 255 // max(h - 1, 1)).astype(np.int32)
    b = ((x + y) * 7 % 256).astype(np.int32)
    img = np.stack([r, g, b], axis=-1) + rng.integers(-20, 21, (h, w, 3))
    img[h // 3: h // 2, w // 4: w // 2] = [250, 10, 10]
    return np.clip(img, 0, 255).astype(np.uint8)


def png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def raw_png(array, color_type):
    """A PNG of `array` (uint16: 16-bit samples) written by hand: Pillow
    writes no 16-bit colour PNGs."""
    h, w = array.shape[:2]
    depth = 16 if array.dtype == np.uint16 else 8
    rows = array.reshape(h, -1)
    if depth == 16:
        rows = rows.astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


cases = []


def add(name, data, note):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(data)
    ref = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    ref_name = name.rsplit(".", 1)[0] + ".ref.png"
    ref.save(os.path.join(OUT, ref_name))
    cases.append({"file": name, "reference": ref_name, "what": note,
                  "mode": Image.open(path).mode, "size": list(ref.size)})


def saved(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


base = Image.fromarray(picture(64, 48))
odd = Image.fromarray(picture(37, 23))

# JPEG: each chroma subsampling, odd sizes (partial MCUs), progressive,
# restart markers, grayscale, CMYK (Pillow writes it as YCCK with Adobe's
# marker), EXIF orientation.
for sub, tag in [(2, "420"), (1, "422"), (0, "444")]:
    add(f"jpeg_{tag}.jpg", saved(base, "JPEG", quality=88, subsampling=sub), f"JPEG 4:{tag[1]}:{tag[2]}")
    add(f"jpeg_{tag}_odd.jpg", saved(odd, "JPEG", quality=75, subsampling=sub), f"JPEG 4:{tag[1]}:{tag[2]}, 37x23")
add("jpeg_progressive.jpg", saved(base, "JPEG", quality=85, progressive=True), "progressive JPEG, 4:2:0")
add("jpeg_restart.jpg", saved(base, "JPEG", quality=85, restart_marker_rows=1), "JPEG with restart markers")
add("jpeg_gray.jpg", saved(base.convert("L"), "JPEG", quality=90), "grayscale JPEG")
add("jpeg_cmyk.jpg", saved(base.convert("CMYK"), "JPEG", quality=90), "CMYK JPEG (YCCK, Adobe marker)")
exif = Image.Exif()
exif[0x0112] = 6  # rotate 90 clockwise to display
add("jpeg_exif6.jpg", saved(base, "JPEG", quality=90, exif=exif.tobytes()), "JPEG with EXIF orientation 6")
exif[0x0112] = 3
add("jpeg_exif3.jpg", saved(odd, "JPEG", quality=90, exif=exif.tobytes()), "JPEG with EXIF orientation 3")

# PNG: 16-bit grayscale (Pillow's convert("RGB") clips above 255), 16-bit
# colour (Pillow keeps the high byte), with alpha, palettes, 1 bit.
gray16 = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 29 % 65536).astype(np.uint16)
gray16[:8] = np.arange(64, dtype=np.uint16)[None, :] * 4  # values under 256 too
add("png_gray16.png", raw_png(gray16, 0), "16-bit grayscale PNG")
rgb16 = (picture(64, 48).astype(np.uint16) * 257 + rng.integers(0, 256, (48, 64, 3))).astype(np.uint16)
add("png_rgb16.png", raw_png(rgb16, 2), "16-bit RGB PNG")
rgba16 = np.concatenate([rgb16, np.full((48, 64, 1), 30000, np.uint16)], axis=-1)
add("png_rgba16.png", raw_png(rgba16, 6), "16-bit RGBA PNG")
la16 = np.stack([gray16, np.full_like(gray16, 40000)], axis=-1)
add("png_graya16.png", raw_png(la16, 4), "16-bit gray+alpha PNG")
add("png_rgba.png", saved(base.convert("RGBA"), "PNG"), "8-bit RGBA PNG (alpha dropped)")
add("png_graya.png", saved(base.convert("LA"), "PNG"), "8-bit gray+alpha PNG")
add("png_palette.png", saved(base.convert("P", palette=Image.ADAPTIVE, colors=37), "PNG"), "palette PNG")
pal_t = base.convert("P", palette=Image.ADAPTIVE, colors=16)
add("png_palette_trns.png", saved(pal_t, "PNG", transparency=3), "palette PNG with a transparent entry")
add("png_1bit.png", saved(base.convert("1"), "PNG"), "1-bit PNG")

# WebP and GIF.
add("webp_lossy.webp", saved(base, "WEBP", quality=80), "lossy WebP")
add("webp_lossless.webp", saved(base, "WEBP", lossless=True), "lossless WebP")
add("gif.gif", saved(base.convert("P", palette=Image.ADAPTIVE, colors=64), "GIF"), "GIF")

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump({"pillow": Image.__version__, "cases": cases}, f, indent=1)
print(f"{len(cases)} cases in {OUT}")
