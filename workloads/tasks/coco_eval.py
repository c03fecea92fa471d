"""COCO mAP of an accuracy log, computed exactly as MLPerf's ``accuracy-coco.py`` does.

Same steps in the same arithmetic: each response's float32 records are read back, boxes
scaled by the image's height/width in float32, ``qsl_idx`` mapped to the annotation file's
``images[qsl_idx]`` (not the COCO image id), images with an empty response kept (they count
for recall), and ``COCOeval(iouType="bbox")`` evaluated over exactly the images the log
holds. So ``accuracy-coco.py`` prints the same ``mAP=`` on our ``mlperf_log_accuracy.json``
(checked in ``tests/test_detection.py``). One difference: a log with no detection at all
scores 0 here, where the script stops with an error (pycocotools cannot load no results).
"""
from __future__ import annotations

import contextlib
import io
from typing import Mapping

import numpy as np

from workloads.base import Score
from workloads.tasks.detection_post import records


def coco_ground_truth(annotations: dict):
    """A pycocotools ``COCO`` from an annotation dict (no file), its index printout muted."""
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = annotations
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def detections(gt, responses: Mapping[int, bytes]) -> tuple[list[dict], list[int]]:
    """COCO result dicts of an accuracy log (qsl index -> response bytes), and the ids of
    every image the log answered, with or without detections."""
    images = gt.dataset["images"]
    dets: list[dict] = []
    image_ids: list[int] = []
    for idx in sorted(responses):
        image = images[idx]
        image_ids.append(image["id"])
        rec = records(responses[idx])
        if not len(rec):
            continue
        if np.any(rec[:, 0].astype(np.int64) != idx):
            raise ValueError(f"accuracy log: a record of qsl_idx {idx} names another image")
        # float32 times the int size, as the script's numpy scalars compute it
        ymin, ymax = rec[:, 1] * image["height"], rec[:, 3] * image["height"]
        xmin, xmax = rec[:, 2] * image["width"], rec[:, 4] * image["width"]
        w, h = xmax - xmin, ymax - ymin
        for i in range(len(rec)):
            dets.append({"image_id": image["id"], "category_id": int(rec[i, 6]),
                         "bbox": [float(xmin[i]), float(ymin[i]), float(w[i]), float(h[i])],
                         "score": float(rec[i, 5])})
    return dets, image_ids


def evaluate(gt, dets: list[dict], image_ids: list[int]) -> np.ndarray:
    """``COCOeval.stats`` (12 figures: AP, AP50, AP75, ...) over ``image_ids``; zeros when
    there is no detection (pycocotools cannot load an empty result list)."""
    from pycocotools.cocoeval import COCOeval

    if not dets:
        return np.zeros(12)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, np.float64)


def score(gt, responses: Mapping[int, bytes], metric: str = "mAP") -> Score:
    """The accuracy log scored: COCO AP@[.5:.95] in 0-1, ``mAP=xx.xxx%`` as MLPerf prints it,
    AP50 beside it."""
    dets, image_ids = detections(gt, responses)
    stats = evaluate(gt, dets, image_ids)
    return Score(metric=metric, value=float(stats[0]),
                 text="mAP={:.3f}%".format(100.0 * stats[0]), count=len(image_ids),
                 extras={"AP50": float(stats[1])})
