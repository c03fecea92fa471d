"""Image decoding and the MLCommons reference preprocessing, without OpenCV.

cv2's INTER_LINEAR and INTER_AREA resamplers re-implemented in numpy (same coordinate
mapping and fixed-point rounding; see ``workloads/imagenet.py`` for how closely they
match): a plain resize (``resize_linear``, COCO's), the aspect-preserving resize + 87.5%
center crop (``resize_crop``, ImageNet's), and ImageNet's two normalisation profiles
(``mobilenet``: ``/255 - 0.5, *2``; ``resnet50``: RGB mean subtraction). Shared by the
image datasets (``imagenet``, ``coco``).
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

CROP_SCALE = 87.5  # resize_with_aspectratio's default: the crop is 87.5% of the short side
VGG_MEANS = np.array([123.68, 116.78, 103.94], dtype=np.float32)
_COEF_BITS = 11  # cv2's INTER_RESIZE_COEF_BITS: linear weights are 11-bit fixed point
_COEF_SCALE = 1 << _COEF_BITS


# --- cv2-compatible resampling (numpy) ----------------------------------------------------
Taps = tuple[np.ndarray, np.ndarray]  # (n_out, k) source indices, (n_out, k) weights


def _linear_taps(n_in: int, n_out: int, area_mode: bool = False) -> Taps:
    """cv2's two-tap table: INTER_LINEAR, or INTER_AREA when it enlarges (``area_mode``)."""
    scale = n_in / n_out
    d = np.arange(n_out, dtype=np.float64)
    if area_mode:
        sx = np.floor(d * scale)
        fx = (d + 1) - (sx + 1) * (1.0 / scale)
        fx = np.where(fx <= 0, 0.0, fx - np.floor(fx))
    else:
        f = (d + 0.5) * scale - 0.5  # pixel centres, as cv2
        sx = np.floor(f)
        fx = f - sx
    fx = fx.astype(np.float32).astype(np.float64)  # cv2 keeps the fraction as a float
    sx = sx.astype(np.int64)
    low, high = sx < 0, sx >= n_in - 1  # cv2 replicates the border pixel
    fx[low], sx[low] = 0.0, 0
    fx[high], sx[high] = 0.0, n_in - 1
    idx = np.stack([sx, np.minimum(sx + 1, n_in - 1)], axis=1)
    weights = np.stack([np.rint((1.0 - fx) * _COEF_SCALE), np.rint(fx * _COEF_SCALE)], axis=1)
    return idx, weights.astype(np.int32)


def _area_taps(n_in: int, n_out: int) -> Taps:
    """cv2's INTER_AREA table when shrinking: each source pixel weighted by its overlap."""
    scale = n_in / n_out
    rows: list[list[tuple[int, float]]] = []
    for d in range(n_out):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, n_in - f1)
        s2 = min(math.floor(f2), n_in - 1)
        s1 = min(math.ceil(f1), s2)
        taps = []
        if s1 - f1 > 1e-3:
            taps.append((s1 - 1, (s1 - f1) / cell))
        taps.extend((s, 1.0 / cell) for s in range(s1, s2))
        if f2 - s2 > 1e-3:
            taps.append((s2, min(f2 - s2, 1.0, cell) / cell))
        rows.append(taps)
    k = max(len(t) for t in rows)
    idx = np.zeros((n_out, k), np.int64)
    weights = np.zeros((n_out, k), np.float32)  # padding taps weigh 0
    for d, taps in enumerate(rows):
        for j, (s, w) in enumerate(taps):
            idx[d, j], weights[d, j] = s, w
    return idx, weights


def _crop_window(n: int, out: int) -> slice:
    """The reference's center_crop along one axis."""
    start = int((n - out) / 2)
    return slice(start, int((n + out) / 2))


def aspect_size(height: int, width: int, out_height: int, out_width: int,
                scale: float = CROP_SCALE) -> tuple[int, int]:
    """(h, w) that the reference's ``resize_with_aspectratio`` resizes an image to."""
    new_height = int(100.0 * out_height / scale)
    new_width = int(100.0 * out_width / scale)
    if height > width:
        return int(new_height * height / width), new_width
    return new_height, int(new_width * width / height)


def resize_crop(img: np.ndarray, out_height: int, out_width: int, interpolation: str) -> np.ndarray:
    """``center_crop(resize_with_aspectratio(img))`` on an (H, W, 3) uint8 image, as cv2 would.

    Only the pixels inside the crop are computed: the resize is separable, so cropping the
    tap tables gives the same values as resizing the whole image and cropping afterwards.
    """
    if interpolation not in ("linear", "area"):
        raise ValueError(f"interpolation {interpolation!r}; one of linear, area")
    h_in, w_in = img.shape[:2]
    h, w = aspect_size(h_in, w_in, out_height, out_width)
    if h < out_height or w < out_width:
        raise ValueError(f"resized image {h}x{w} is smaller than the crop {out_height}x{out_width}")
    rows, cols = _crop_window(h, out_height), _crop_window(w, out_width)
    shrink = h_in >= h and w_in >= w  # cv2 uses its area algorithm only when shrinking both
    if interpolation == "area" and shrink and h_in % h == 0 and w_in % w == 0:
        return _area_integer(img, h_in // h, w_in // w, rows, cols)
    if interpolation == "area" and shrink:
        yi, yw = _area_taps(h_in, h)
        xi, xw = _area_taps(w_in, w)
        return _apply_float(img, yi[rows], yw[rows], xi[cols], xw[cols])
    yi, yw = _linear_taps(h_in, h, area_mode=interpolation == "area")
    xi, xw = _linear_taps(w_in, w, area_mode=interpolation == "area")
    return _apply_fixed(img, yi[rows], yw[rows], xi[cols], xw[cols])


def resize_linear(img: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
    """``cv2.resize(img, (out_width, out_height), interpolation=INTER_LINEAR)`` on an
    (H, W, 3) uint8 image: the whole image, aspect ratio not kept."""
    yi, yw = _linear_taps(img.shape[0], out_height)
    xi, xw = _linear_taps(img.shape[1], out_width)
    return _apply_fixed(img, yi, yw, xi, xw)


def _apply_fixed(img: np.ndarray, yi: np.ndarray, yw: np.ndarray, xi: np.ndarray,
                 xw: np.ndarray) -> np.ndarray:
    # Horizontal pass in int (x2048), then cv2's SIMD vertical pass: the high 16 bits of
    # (row >> 4) * weight, summed, rounded by (v + 2) >> 2. The scalar formula differs by one
    # grey level on ~10% of pixels, so the SIMD one (what x86/ARM builds run) is followed.
    src = img[yi.ravel()].astype(np.int32)  # (h*2, w_in, 3): only the source rows needed
    rows = src[:, xi[:, 0]] * xw[None, :, 0, None] + src[:, xi[:, 1]] * xw[None, :, 1, None]
    rows = (rows >> 4).reshape(len(yi), 2, len(xi), 3)
    val = ((rows[:, 0] * yw[:, 0, None, None]) >> 16) + ((rows[:, 1] * yw[:, 1, None, None]) >> 16)
    return np.clip((val + 2) >> 2, 0, 255).astype(np.uint8)


def _apply_float(img: np.ndarray, yi: np.ndarray, yw: np.ndarray, xi: np.ndarray,
                 xw: np.ndarray) -> np.ndarray:
    src = img.astype(np.float32)
    rows = np.zeros((img.shape[0], len(xi), 3), np.float32)
    for k in range(xi.shape[1]):  # taps in order, accumulated in float32 as cv2 does
        rows += src[:, xi[:, k]] * xw[None, :, k, None]
    out = np.zeros((len(yi), len(xi), 3), np.float32)
    for k in range(yi.shape[1]):
        out += rows[yi[:, k]] * yw[:, k, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _area_integer(img: np.ndarray, ky: int, kx: int, rows: slice, cols: slice) -> np.ndarray:
    # cv2's fast path for whole-number scales: block sums; 2x2 rounds half up, others rint.
    block = img[rows.start * ky:rows.stop * ky, cols.start * kx:cols.stop * kx].astype(np.int32)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    total = block.reshape(h, ky, w, kx, 3).sum(axis=(1, 3))
    if ky == kx == 2:
        return ((total + 2) >> 2).astype(np.uint8)
    return np.clip(np.rint(total * np.float32(1.0 / (kx * ky))), 0, 255).astype(np.uint8)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB, as ``cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)``."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)  # cv2.imread honours EXIF orientation by default
        return np.asarray(im.convert("RGB"))


# --- profiles ------------------------------------------------------------------------------
def _normalize_mobilenet(x: np.ndarray) -> np.ndarray:
    x /= 255.0  # the reference's in-place float32 steps, in its order
    x -= 0.5
    x *= 2
    return x


def _normalize_vgg(x: np.ndarray) -> np.ndarray:
    x -= VGG_MEANS
    return x


@dataclass(frozen=True)
class Profile:
    name: str
    interpolation: str  # "linear" | "area"
    normalize: Callable[[np.ndarray], np.ndarray]  # float32 (..., H, W, 3) in place


PROFILES: dict[str, Profile] = {
    "mobilenet": Profile("mobilenet", "linear", _normalize_mobilenet),  # pre_process_mobilenet
    "resnet50": Profile("resnet50", "area", _normalize_vgg),  # pre_process_vgg
}


def preprocess(img: np.ndarray, profile: str, height: int, width: int) -> np.ndarray:
    """One RGB uint8 image -> the reference's float32 (height, width, 3) sample (HWC)."""
    prof = PROFILES[profile]
    return prof.normalize(resize_crop(img, height, width, prof.interpolation).astype(np.float32))


class LruCache:
    """A byte-bounded LRU map, safe across threads (the QSL loads on LoadGen's thread)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the QSL loads on LoadGen's thread

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, value: np.ndarray) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self.bytes += value.nbytes
            while self.bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self.bytes -= old.nbytes
