"""Reproduce the shipped digit-canvas detectors (needs the ``train`` extra: torch).

    python -m workloads.digit_canvases.train [--widths 0.5 1.0 2.0] [--steps N] [--threads 1]

Plain torch (no torchvision): anchors and box codec from ``model.py``, SSD matching (IoU
>= 0.4, plus each box's best anchor), softmax cross-entropy with 3:1 hard negative mining
and smooth-L1 box loss. One network per width is trained across all input resolutions of
the family (a random resolution per batch) and its batch-norm statistics are then
re-estimated at each resolution (as ``workloads/digits/train.py`` does for the
classifiers): one weight set per width keeps the shipped files small. Conv weights are
stored as float16; every figure in the manifest is measured on the graph built from them.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from workloads.digit_canvases import data, model as det

WIDTHS = (0.5, 1.0, 2.0)
RESOLUTIONS = (64, 96, 128)
# the shipped weights' steps (batch 32): w2.0 got fewer to fit a busy 2-core host; each
# width took ~8-17 min there with one torch thread (OPENBLAS_NUM_THREADS=1 too)
STEPS = {0.5: 1500, 1.0: 1500, 2.0: 1000}
# SSD uses 0.5; a digit then matched ~1 anchor at 64 px (anchor spacing 1/8 of the image):
# 0.4 gives each box a few positives, which trains faster
MATCH_IOU = 0.4


def _torch_model(width: float):
    import torch
    from torch import nn

    class SSD(nn.Module):
        def __init__(self):
            super().__init__()
            self.plan = det.layer_plan(width)
            self.convs = nn.ModuleDict()
            self.bns = nn.ModuleDict()
            for c in self.plan:
                key = c.name.replace(".", "_")
                self.convs[key] = nn.Conv2d(c.in_channels, c.out_channels, c.kernel, c.stride,
                                            c.kernel // 2, bias=not c.relu6,
                                            groups=c.in_channels if c.depthwise else 1)
                if c.relu6:
                    self.bns[key] = nn.BatchNorm2d(c.out_channels)

        def forward(self, x):
            outs, prev = {}, x
            for c in self.plan:
                key = c.name.replace(".", "_")
                y = self.convs[key](outs[c.src] if c.src else prev)
                if c.relu6:
                    y = torch.clamp(self.bns[key](y), 0.0, 6.0)
                outs[c.name] = prev = y
            n = x.shape[0]
            flat = lambda t, k: t.permute(0, 2, 3, 1).reshape(n, -1, k)  # noqa: E731
            boxes = torch.cat([flat(outs[f"h{s}.box"], 4) for s in det.levels()], 1)
            logits = torch.cat([flat(outs[f"h{s}.cls"], det.OUT_CLASSES) for s in det.levels()], 1)
            return boxes, logits

    return SSD()


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (n, 4) and (m, 4) (ymin, xmin, ymax, xmax) boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def targets(canvases: data.Canvases, idx, anchor: np.ndarray):
    """Per-anchor class (0 = background) and regression targets for a batch."""
    a_yxyx = np.concatenate([anchor[:, :2] - anchor[:, 2:] / 2, anchor[:, :2] + anchor[:, 2:] / 2], 1)
    cls = np.zeros((len(idx), len(anchor)), np.int64)
    reg = np.zeros((len(idx), len(anchor), 4), np.float32)
    for n, i in enumerate(idx):
        H, W = canvases.images[i].shape
        b = canvases.boxes[i]
        if not len(b):
            continue
        gt = np.stack([b[:, 1] / H, b[:, 0] / W, (b[:, 1] + b[:, 3]) / H, (b[:, 0] + b[:, 2]) / W], 1)
        iou = _iou(a_yxyx, gt)
        best = iou.argmax(1)
        best_iou = iou.max(1)
        best_iou[iou.argmax(0)] = 1.0  # each box keeps its best anchor
        best[iou.argmax(0)] = np.arange(len(gt))
        pos = best_iou >= MATCH_IOU
        cls[n, pos] = canvases.labels[i][best[pos]] + 1
        reg[n, pos] = det.encode(gt[best[pos]], anchor[pos])
    return cls, reg


def _loss(boxes, logits, cls, reg):
    import torch
    import torch.nn.functional as F

    pos = cls > 0
    n_pos = pos.sum(1, keepdim=True).clamp(min=1)
    ce = F.cross_entropy(logits.reshape(-1, det.OUT_CLASSES), cls.reshape(-1),
                         reduction="none").reshape(cls.shape)
    neg_ce = ce.detach().clone()
    neg_ce[pos] = 0.0
    rank = neg_ce.argsort(1, descending=True).argsort(1)
    hard_neg = rank < 3 * n_pos
    box = F.smooth_l1_loss(boxes[pos], reg[pos], reduction="sum")
    return (ce[pos | hard_neg].sum() + box) / n_pos.sum()


def _export(net, width: float, canvases: data.Canvases) -> dict[str, np.ndarray]:
    """fp16 conv weights, fp32 head biases, and each resolution's BN as (scale, shift)."""
    import torch
    from torch import nn

    out: dict[str, np.ndarray] = {}
    for c in net.plan:
        key = c.name.replace(".", "_")
        out[f"{c.name}.w"] = net.convs[key].weight.detach().numpy().astype(np.float16)
        if not c.relu6:
            out[f"{c.name}.b"] = net.convs[key].bias.detach().numpy().astype(np.float32)
    for res in RESOLUTIONS:
        for bn in net.bns.values():  # cumulative re-estimate at this resolution
            bn.reset_running_stats()
            bn.momentum = None
        net.train()
        with torch.no_grad():
            for start in range(0, min(1024, len(canvases.images)), 128):
                net(torch.from_numpy(data.preprocess(canvases.images[start:start + 128], res)))
        net.eval()
        for c in net.plan:
            if c.relu6:
                bn: nn.BatchNorm2d = net.bns[c.name.replace(".", "_")]
                scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().numpy()
                shift = bn.bias.detach().numpy() - bn.running_mean.numpy() * scale
                out[f"r{res}.{c.name}.scale"] = scale.astype(np.float32)
                out[f"r{res}.{c.name}.shift"] = shift.astype(np.float32)
    return out


def train(width: float, steps: int, seed: int = 0, lr: float = 4e-3, batch: int = 32,
          canvases: data.Canvases | None = None) -> dict[str, np.ndarray]:
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    canvases = canvases or data.make_canvases("train", data.TRAIN_COUNT)
    net = _torch_model(width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    anchor = {r: det.anchors(r) for r in RESOLUTIONS}
    net.train()
    t0 = time.time()
    for step in range(steps):
        res = int(rng.choice(RESOLUTIONS))
        idx = rng.integers(0, len(canvases.images), size=batch)
        x = torch.from_numpy(data.preprocess([canvases.images[i] for i in idx], res))
        cls, reg = targets(canvases, idx, anchor[res])
        boxes, logits = net(x)
        loss = _loss(boxes, logits, torch.from_numpy(cls), torch.from_numpy(reg))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"  width {width} step {step}/{steps} loss {loss.item():.3f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    return _export(net, width, canvases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=float, nargs="*", default=list(WIDTHS))
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps for every width (default: the shipped STEPS)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--no-evaluate", action="store_true")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.evaluate_only:
        det.ASSETS.mkdir(parents=True, exist_ok=True)
        canvases = data.make_canvases("train", data.TRAIN_COUNT)
        for width in args.widths:
            t0 = time.time()
            weights = train(width, args.steps or STEPS.get(width, 1500), canvases=canvases)
            np.savez_compressed(det.weights_path(width), **weights)
            print(f"width {width}: trained in {time.time() - t0:.0f} s -> "
                  f"{det.weights_path(width)}", flush=True)
    if not args.no_evaluate:
        from workloads.digit_canvases.evaluate import evaluate

        evaluate()


if __name__ == "__main__":
    main()
