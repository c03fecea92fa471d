"""Reproduce the shipped DLRM weights of the click_logs workload (needs torch).

    python -m workloads.click_logs.train [--dims 8 16 32] [--epochs 6] [--pairs 393216]

Each epoch is a fresh draw from the click model (seed ``TRAIN_SEED + epoch``; the
evaluation draw's seed is never used), so the model never sees an evaluation pair. One
network per embedding dimension (``model.DIMS``); weights are saved as float32 (an fp16
or int8 table is then a graph-time transformation of the trained fp32 one, so each
precision's AUC measures what that precision costs). ``evaluate`` then scores every
(dim, precision) graph with ONNX Runtime on the evaluation draw and writes
``assets/manifest.json``, whose fp32 AUCs are the workload's reference accuracy.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from workloads.click_logs.data import EVAL_SEED, NUM_DENSE, TRAIN_SEED, ClickModel
from workloads.click_logs.model import DIMS, PRECISIONS, build_onnx, lower_triangle, mlp_widths, row_offsets, shapes

ASSETS = Path(__file__).parent / "assets"
EVAL_PAIRS = 131072  # the workload's default `pairs` (conf/workload/click_logs.yaml)


def weights_path(dim: int) -> Path:
    return ASSETS / f"dlrm_d{dim}.npz"


def _torch_model(dim: int):
    import torch
    from torch import nn

    bottom, top = mlp_widths(dim)

    def mlp(widths, width, last_relu):
        layers = []
        for i, w in enumerate(widths):
            layers.append(nn.Linear(width, w))
            if last_relu or i < len(widths) - 1:
                layers.append(nn.ReLU())
            width = w
        return nn.Sequential(*layers)

    class DLRM(nn.Module):
        def __init__(self):
            super().__init__()
            rows = shapes(dim)["emb"][0]
            self.emb = nn.Embedding(rows, dim)
            nn.init.uniform_(self.emb.weight, -0.05, 0.05)
            self.bottom = mlp(bottom, NUM_DENSE, last_relu=True)
            self.top = mlp(top, dim + len(lower_triangle()), last_relu=False)
            self.register_buffer("offsets", torch.from_numpy(row_offsets()))
            self.register_buffer("tril", torch.from_numpy(lower_triangle()))

        def forward(self, dense, sparse):  # logits; the graph adds the sigmoid
            x = self.bottom(dense)
            t = torch.cat([x[:, None, :], self.emb(sparse + self.offsets)], dim=1)
            gram = torch.bmm(t, t.transpose(1, 2)).flatten(1)
            return self.top(torch.cat([x, gram[:, self.tril]], dim=1)).squeeze(1)

    return DLRM()


def _export(model) -> dict[str, np.ndarray]:
    out = {"emb": model.emb.weight.detach().numpy().astype(np.float32)}
    for prefix, seq in (("bot", model.bottom), ("top", model.top)):
        linears = [m for m in seq if hasattr(m, "weight")]
        for i, lin in enumerate(linears):
            out[f"{prefix}{i}.w"] = lin.weight.detach().numpy().astype(np.float32)
            out[f"{prefix}{i}.b"] = lin.bias.detach().numpy().astype(np.float32)
    return out


def train(dim: int, epochs: int, pairs: int, batch: int = 2048, seed: int = 0) -> dict[str, np.ndarray]:
    import torch

    torch.manual_seed(seed)
    world = ClickModel()
    model = _torch_model(dim)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * (pairs // batch))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        logs = world.draw(pairs, TRAIN_SEED + epoch)
        dense, sparse = torch.from_numpy(logs.dense), torch.from_numpy(logs.sparse)
        labels = torch.from_numpy(logs.labels)
        order = torch.randperm(pairs)
        start, total = time.time(), 0.0
        model.train()
        for i in range(0, pairs - batch + 1, batch):
            pick = order[i:i + batch]
            loss = loss_fn(model(dense[pick], sparse[pick]), labels[pick])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * batch
        print(f"dim {dim} epoch {epoch}: loss {total / pairs:.4f} ({time.time() - start:.0f} s)",
              flush=True)
    model.eval()
    return _export(model)


def evaluate(dims=DIMS, pairs: int = EVAL_PAIRS) -> dict:
    """Every (dim, precision) graph's AUC with ONNX Runtime on the evaluation draw."""
    import onnxruntime as ort
    from sklearn.metrics import roc_auc_score

    logs = ClickModel().draw(pairs, EVAL_SEED)
    feeds = {"dense": logs.dense, "sparse": logs.sparse}
    auc = {}
    for dim in dims:
        weights = dict(np.load(weights_path(dim)))
        for precision in PRECISIONS:
            model = build_onnx(weights, dim, precision)
            sess = ort.InferenceSession(model.SerializeToString(),
                                        providers=["CPUExecutionProvider"])
            pred = sess.run(None, feeds)[0].reshape(-1)
            auc[f"dlrm_d{dim}_{precision}"] = round(float(roc_auc_score(logs.labels, pred)), 6)
            print(f"dlrm_d{dim}_{precision}: AUC {auc[f'dlrm_d{dim}_{precision}']:.4f}", flush=True)
    return {"auc": auc, "eval_pairs": pairs, "eval_seed": EVAL_SEED,
            "click_model_auc": round(float(roc_auc_score(logs.labels, logs.probability)), 6)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--pairs", type=int, default=393216, help="pairs per epoch")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--eval-only", action="store_true")
    args = parser.parse_args(argv)
    ASSETS.mkdir(exist_ok=True)
    if not args.eval_only:
        import torch

        torch.set_num_threads(args.threads)
        for dim in args.dims:
            np.savez_compressed(weights_path(dim), **train(dim, args.epochs, args.pairs))
    path = ASSETS / "manifest.json"
    trained = json.loads(path.read_text()).get("train", {}) if path.is_file() else {}
    if not args.eval_only:  # each dim keeps the recipe it was trained with
        for dim in args.dims:
            trained[f"d{dim}"] = {"epochs": args.epochs, "pairs_per_epoch": args.pairs,
                                  "train_seeds": f"{TRAIN_SEED}..{TRAIN_SEED + args.epochs - 1}"}
    manifest = evaluate([d for d in DIMS if weights_path(d).exists()])
    manifest["train"] = trained
    path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
