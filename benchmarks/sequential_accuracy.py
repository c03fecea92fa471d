"""Sequential accuracy on a large offline validation set: samples scored per trial, floor
verdicts against full-set verdicts, device time to 90% of the true front.

The set: the 359 held-out UCI digits, each also shifted by one pixel (8 directions) and
with pixel noise (seeded), to 12,000+ images (``--size``): a validation set of realistic
size that needs no download. Every digits variant (4 widths x 4 resolutions x fp32/int8)
is scored on all of it once with ONNX Runtime (the truth). Then each variant's search trial
is replayed with the worker's own rules (``experiments.sequential``: fixed shuffled order,
chunks 64, 128, ..., stop when the verdict against the floor is settled at 99% confidence,
paired with the fp32 reference's per-sample results):

- samples scored / set size, per trial and on average (goal: <= 10%);
- verdicts (above / below the floor, 99% of the best fp32 full-set top-1) agreeing with the
  full-set verdicts (goal: >= 99%), every disagreement listed with its interval;
- device time to 90% of the true front, trials in one random order for both: each trial
  costs a performance run (``--perf-s``) plus its accuracy samples at the variant's own
  measured per-sample time, against today's full pass.

Each figure twice: with the floor rule alone, and with the front rule as well (a trial also
stops once a feasible trial before it, in the random trial order, is at least as fast and
surely more accurate: ``sequential.dominated_by``; speed here is the variant's measured
per-sample time).

    python benchmarks/sequential_accuracy.py [--size 12000] [--seeds 5]
"""
from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments import sequential
from workloads.digits import data as digits_data
from workloads.digits import PRECISIONS, RESOLUTIONS, WIDTHS, DigitsWorkload


def augmented(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    split = digits_data.load_split()
    images, labels = split["val_images"], split["val_labels"]
    rng = np.random.default_rng(seed)
    out, lab = [images], [labels]
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    while sum(len(x) for x in out) < size:
        dy, dx = shifts[len(out) % len(shifts)]
        moved = np.roll(np.roll(images, dy, axis=1), dx, axis=2)
        noisy = np.clip(moved + rng.normal(0, 1.0, moved.shape), 0, 16)
        out.append(noisy.astype(np.float32))
        lab.append(labels)
    return np.concatenate(out)[:size], np.concatenate(lab)[:size]


def truth(size: int) -> tuple[dict, dict, np.ndarray]:
    """Per-variant per-sample correctness on the whole set, and seconds per sample."""
    import onnxruntime as ort

    images, labels = augmented(size)
    wl = DigitsWorkload()
    correct, per_sample_s = {}, {}
    for w in WIDTHS:
        for r in RESOLUTIONS:
            x = digits_data.preprocess(images, r)
            for p in PRECISIONS:
                v = wl.variant(w, r, p)
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 1
                sess = ort.InferenceSession(str(wl.model_file(v)), opts,
                                            providers=["CPUExecutionProvider"])
                start = time.perf_counter()
                logits = np.concatenate([sess.run(None, {"input": x[i:i + 256]})[0]
                                         for i in range(0, len(x), 256)])
                per_sample_s[v.name] = (time.perf_counter() - start) / len(x)
                correct[v.name] = (logits.argmax(1) == labels).astype(np.float64)
    return correct, per_sample_s, labels


def replay(correct: dict, floor: float, ref: np.ndarray, ref_acc: float, order, conf: float,
           width: float = 0.0, speed: dict | None = None, trial_order=None):
    """name -> (samples scored, interval). With ``speed`` (per variant, lower is better),
    trials run in ``trial_order`` and the front rule applies, as the worker's does with the
    study's feasible points so far (an estimate counts at its low end)."""
    total = len(ref)
    out, feasible = {}, []
    for name in (trial_order if trial_order is not None else correct):
        c = correct[name]
        done, iv = 0, None
        for n in sequential.chunks(total, 64):
            done = n
            idx = order[:n]
            iv = sequential.paired(c[idx] - ref[idx], ref_acc, total, conf)
            if sequential.settled(iv, floor, total, width):
                break
            if speed is not None and sequential.dominated_by(iv, speed[name], feasible, False):
                break
        out[name] = (done, iv)
        whole = done >= total
        if speed is not None and (sequential.verdict(iv, floor) == sequential.ABOVE
                                  or (whole and iv.estimate >= floor)):
            feasible.append((speed[name], iv.estimate if whole else iv.low))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=12000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--perf-s", type=float, default=2.0)
    parser.add_argument("--confidence", type=float, default=0.99)
    parser.add_argument("--width", type=float, default=0.005,
                        help="stop once the interval is this narrow (fidelity.accuracy_width)")
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / f"tuner-seq-truth-{args.size}.pkl"
    if cache.exists():
        correct, per_s, labels = pickle.loads(cache.read_bytes())
    else:
        correct, per_s, labels = truth(args.size)
        cache.write_bytes(pickle.dumps((correct, per_s, labels)))
    acc = {k: float(v.mean()) for k, v in correct.items()}
    ref_name = max((k for k in acc if k.endswith("_fp32")), key=acc.get)
    floor = 0.99 * acc[ref_name]
    print(f"set: {args.size} images; reference {ref_name} top-1 {acc[ref_name]:.4f}; "
          f"floor {floor:.4f}; {sum(a >= floor for a in acc.values())} of {len(acc)} "
          "variants above it")
    names = list(acc)
    feasible = [n for n in names if acc[n] >= floor]
    front = [n for n in feasible if not any(
        per_s[o] <= per_s[n] and acc[o] >= acc[n] and (per_s[o], acc[o]) != (per_s[n], acc[n])
        for o in feasible)]
    need = int(np.ceil(0.9 * len(front)))
    for rule in ("floor", "floor + front"):
        print(f"\n--- stopping rule: {rule} ---")
        fractions, agree, total_trials, disagreements, undecided = [], 0, 0, [], 0
        ratios = []
        for seed in range(args.seeds):
            order = sequential.shuffled_order(args.size, seed=seed)
            trial_order = list(np.random.default_rng(100 + seed).permutation(names))
            res = replay(correct, floor, correct[ref_name], acc[ref_name], order,
                         args.confidence, args.width,
                         speed=per_s if rule != "floor" else None, trial_order=trial_order)
            for name, (done, iv) in res.items():
                verdict = sequential.verdict(iv, floor)
                undecided += verdict == sequential.UNDECIDED and done < args.size
                fractions.append(done / args.size)
                est = verdict == sequential.ABOVE if verdict != sequential.UNDECIDED \
                    else iv.estimate >= floor
                total_trials += 1
                if est == (acc[name] >= floor):
                    agree += 1
                else:
                    disagreements.append((seed, name, acc[name], iv))
            # device time to 90% of the true front (latency = per-sample time, accuracy = full)
            full_t = seq_t = 0.0
            found = 0
            for n in trial_order:
                full_t += args.perf_s + per_s[n] * args.size
                seq_t += args.perf_s + per_s[n] * res[n][0]
                found += n in front
                if found >= need:
                    break
            ratios.append(seq_t / full_t)
        print(f"samples scored per trial / set size: mean {np.mean(fractions):.3f}, median "
              f"{np.median(fractions):.3f}, max {np.max(fractions):.3f} (goal <= 0.10 on average)")
        print(f"floor verdicts agreeing with the full set: {agree}/{total_trials} = "
              f"{agree / total_trials:.4f} (goal >= 0.99)")
        print(f"recorded undecided (interval straddling the floor when scoring stopped):"
              f" {undecided}/{total_trials}")
        for seed, name, a, iv in disagreements:
            print(f"  disagreement seed {seed}: {name} full {a:.4f} vs estimate {iv.estimate:.4f} "
                  f"[{iv.low:.4f}, {iv.high:.4f}] after {iv.samples}")
        print(f"device time to 90% of the true front ({len(front)} points; {args.perf_s:.0f} s "
              f"performance run per trial): sequential / full pass = {np.mean(ratios):.3f} "
              f"(per seed: {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
