"""The offline detection dataset: scikit-learn digits pasted on grey canvases, with COCO boxes.

Everything is generated from the digits shipped in the scikit-learn wheel, deterministic
for a seed. The validation canvases use only held-out digits (``digits_data``'s 20% split),
the training canvases only training digits, so the detector is scored on handwriting it
never saw.

A canvas is a grey uint8 image (height and width each 112, 128 or 144 px, so the plain
resize to a square model input stretches it, as COCO's does) holding 1-5 digits of
14-40 px height that do not overlap. A ground-truth box is the tight box of the digit's
ink (resized pixels above a quarter of full ink), in canvas pixels. Categories are COCO
style: the digit d has category id d + 1 (id 0 does not exist, as in COCO, so an
off-by-one in the class id shows as mAP 0). Image ids are not the QSL index either
(``IMAGE_ID_BASE + index``): the accuracy log's ``qsl_idx`` indexes the annotation file's
``images`` list, as in MLPerf.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from workloads.digits import data as digits_data

NUM_CLASSES = 10  # digits 0-9; the model adds a background class at index 0
CANVAS_SIZES = (112, 128, 144)
DIGIT_HEIGHTS = (14, 40)  # px, inclusive range of a pasted digit's height
MAX_DIGITS = 5
INK_THRESHOLD = 0.25  # of full ink: what counts as the digit's extent
IMAGE_ID_BASE = 5001
VAL_COUNT = 400
TRAIN_COUNT = 6000
SEED = 2026
_SPLIT_STREAM = {"val": 1, "train": 2}


def category_id(digit: int) -> int:
    return int(digit) + 1


@dataclass
class Canvases:
    images: list[np.ndarray]  # (H, W) uint8 each
    boxes: list[np.ndarray]  # (k, 4) float32 [x, y, w, h] in pixels each (COCO order)
    labels: list[np.ndarray]  # (k,) int64 digit 0-9 each


@lru_cache(maxsize=None)
def _resize_matrix(src: int, dst: int) -> np.ndarray:
    return digits_data._bilinear_matrix(src, dst)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear (half-pixel centres) resize of one 2-D float image, as two matmuls."""
    return _resize_matrix(image.shape[0], height) @ image @ _resize_matrix(image.shape[1], width).T


@lru_cache(maxsize=1)
def _digit_pool() -> dict[str, np.ndarray]:
    """``digits_data.load_split()``, read from the CSV inside the scikit-learn wheel without
    importing scikit-learn (seconds on a busy 2-core host; the CSV takes milliseconds)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" \
        if spec and spec.submodule_search_locations else None
    if csv is None or not csv.exists():
        return digits_data.load_split()
    raw = np.loadtxt(csv, delimiter=",", dtype=np.float32)
    images, target = raw[:, :-1].reshape(-1, 8, 8), raw[:, -1].astype(np.int64)
    # the same seeded split as digits_data.load_split (tests/test_detection_models.py checks)
    order = np.random.default_rng(digits_data.SPLIT_SEED).permutation(len(target))
    n_held = int(round(len(order) * digits_data.HELD_OUT_FRACTION))
    train, held = order[:-n_held], order[-n_held:]
    return {"train_images": images[train], "train_labels": target[train],
            "val_images": images[held], "val_labels": target[held]}


def _paste(canvas: np.ndarray, digit: np.ndarray, rng: np.random.Generator,
           taken: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
    """Paste one 8x8 digit (0..16) at a random free place; its ink box (x0, y0, x1, y1)."""
    h = int(rng.integers(DIGIT_HEIGHTS[0], DIGIT_HEIGHTS[1] + 1))
    w = max(8, int(round(h * rng.uniform(0.8, 1.1))))
    ink = np.clip(resize(digit / 16.0, h, w), 0.0, 1.0)
    rows = np.flatnonzero(ink.max(axis=1) > INK_THRESHOLD)
    cols = np.flatnonzero(ink.max(axis=0) > INK_THRESHOLD)
    if len(rows) == 0 or len(cols) == 0:
        return None
    H, W = canvas.shape
    for _ in range(20):
        y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        box = (x + int(cols[0]), y + int(rows[0]), x + int(cols[-1]) + 1, y + int(rows[-1]) + 1)
        # a 2 px gap between ink boxes: touching digits would make the boxes ambiguous
        if all(box[0] >= b[2] + 2 or b[0] >= box[2] + 2 or box[1] >= b[3] + 2 or b[1] >= box[3] + 2
               for b in taken):
            level = rng.uniform(150, 255)
            region = canvas[y:y + h, x:x + w]
            np.maximum(region, ink * level, out=region)
            taken.append(box)
            return box
    return None


def make_canvases(split: str, count: int, seed: int = SEED) -> Canvases:
    """``count`` canvases of the ``val`` or ``train`` split, deterministic for ``seed``."""
    if split not in _SPLIT_STREAM:
        raise ValueError(f"digit canvases: split {split!r}; one of {sorted(_SPLIT_STREAM)}")
    pool = _digit_pool()
    digits = pool[f"{split}_images"]
    labels = pool[f"{split}_labels"]
    rng = np.random.default_rng([seed, _SPLIT_STREAM[split]])
    out = Canvases([], [], [])
    for _ in range(count):
        H, W = (int(s) for s in rng.choice(CANVAS_SIZES, size=2))
        canvas = np.clip(rng.uniform(0, 60) + rng.normal(0, 8, size=(H, W)), 0, 255)
        taken: list[tuple[int, int, int, int]] = []
        kept = []
        for i in rng.integers(0, len(digits), size=int(rng.integers(1, MAX_DIGITS + 1))):
            box = _paste(canvas, digits[i], rng, taken)
            if box is not None:
                kept.append(labels[i])
        xyxy = np.array(taken, np.float32).reshape(-1, 4)
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        out.images.append(np.round(canvas).astype(np.uint8))
        out.boxes.append(xywh)
        out.labels.append(np.array(kept, np.int64))
    return out


def coco_annotations(canvases: Canvases) -> dict:
    """The COCO ``instances`` dict of a split: images in QSL order, one annotation per box."""
    images, anns = [], []
    for i, (img, boxes, labels) in enumerate(zip(canvases.images, canvases.boxes,
                                                 canvases.labels)):
        image_id = IMAGE_ID_BASE + i
        images.append({"id": image_id, "file_name": f"{i:06d}.png", "height": int(img.shape[0]),
                       "width": int(img.shape[1]), "coco_url": f"digit_canvases/{i:06d}.png"})
        for box, label in zip(boxes, labels):
            anns.append({"id": len(anns) + 1, "image_id": image_id,
                         "category_id": category_id(label),
                         "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                         "iscrowd": 0})
    categories = [{"id": category_id(d), "name": str(d), "supercategory": "digit"}
                  for d in range(NUM_CLASSES)]
    return {"info": {"description": "tuner digit canvases (scikit-learn digits)"},
            "images": images, "annotations": anns, "categories": categories}


def preprocess(images: list[np.ndarray], resolution: int) -> np.ndarray:
    """Canvases -> (N, 1, R, R) float32 in [-1, 1]: a plain resize (no crop), as MLPerf's
    SSD preprocessing does; training and inference share it."""
    out = np.empty((len(images), 1, resolution, resolution), np.float32)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for n, img in enumerate(images):
        by_shape.setdefault(img.shape, []).append(n)
    for (h, w), idx in by_shape.items():  # one batched matmul pair per canvas shape
        stack = np.stack([images[n] for n in idx]).astype(np.float32)
        rows, cols = _resize_matrix(h, resolution), _resize_matrix(w, resolution)
        # two plain GEMMs (numpy's broadcast matmul loops over the stack)
        y = (stack.reshape(-1, w) @ cols.T).reshape(len(idx), h, resolution)
        y = y.transpose(0, 2, 1).reshape(-1, h) @ rows.T
        out[idx, 0] = y.reshape(len(idx), resolution, resolution).transpose(0, 2, 1)
    out *= 2.0 / 255.0
    out -= 1.0
    return out
