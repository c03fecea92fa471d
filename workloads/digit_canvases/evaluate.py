"""mAP / AP50 of every shipped variant (default knobs) with ONNX Runtime and LiteRT.

    python -m workloads.digit_canvases.evaluate [--no-write] [--runtimes onnxruntime litert]

Runs the workload's own responder (decode + NMS + records) and scorer over the whole
validation set, one batch at a time, outside LoadGen: the figures of ``assets/manifest.json``
(the family's reference accuracy) and of the README's table, not a trial.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from backends.base import TensorSpec
from workloads.digit_canvases import data, model as det
from workloads.digit_canvases.workload import (PRECISIONS, RESOLUTIONS, WIDTHS,
                                               DigitCanvasesWorkload)

BATCH = 50


def _session(runtime: str, path: str):
    """(predict, input spec, output specs) of a model file on a runtime, used directly (one
    thread)."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        outputs = [TensorSpec(o.name, tuple(o.shape), np.dtype(np.float32))
                   for o in sess.get_outputs()]
        return ((lambda feeds: sess.run(None, feeds)),
                TensorSpec(inp.name, tuple(inp.shape), np.dtype(np.float32)), outputs)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=1)
    d = interp.get_input_details()[0]
    outs = [o["index"] for o in interp.get_output_details()]

    def predict(feeds):
        x = feeds[d["name"]]
        interp.resize_tensor_input(d["index"], list(x.shape))
        interp.allocate_tensors()
        interp.set_tensor(d["index"], x)
        interp.invoke()
        return [interp.get_tensor(i) for i in outs]

    outputs = [TensorSpec(o["name"], tuple(int(s) for s in o["shape"]), np.dtype(o["dtype"]))
               for o in interp.get_output_details()]
    return (predict, TensorSpec(d["name"], tuple(int(s) for s in d["shape"]), np.dtype(np.float32)),
            outputs)


def variant_map(workload: DigitCanvasesWorkload, variant, runtime: str) -> dict[str, float]:
    fmt = "onnx" if runtime == "onnxruntime" else "tflite"
    predict, spec, outputs = _session(runtime, str(workload.model_file(variant, fmt)))
    respond = workload.responder(variant, predict, [spec], outputs, BATCH)
    samples = workload.load_samples(range(workload.total_sample_count), variant)
    responses = {}
    t0 = time.perf_counter()
    for start in range(0, len(samples), BATCH):
        batch = samples[start:start + BATCH]
        for s, (addr, nbytes) in zip(batch, respond(batch)):
            responses[s.index] = (np.ctypeslib.as_array((np.ctypeslib.ctypes.c_char * nbytes)
                                                        .from_address(addr)).tobytes()
                                  if nbytes else b"")
    ms = (time.perf_counter() - t0) * 1e3 / len(samples)
    score = workload.score(responses)
    return {"mAP": round(score.value, 4), "AP50": round(score.extras["AP50"], 4),
            "ms_per_image_batched": round(ms, 2)}


def evaluate(runtimes=("onnxruntime", "litert"), write: bool = True,
             widths=WIDTHS) -> dict:
    """Every variant of ``widths`` on ``runtimes``; rows of other widths already in the
    manifest are kept (so one retrained width is re-measured alone)."""
    workload = DigitCanvasesWorkload()
    path = det.ASSETS / "manifest.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    manifest: dict = {"dataset": f"digit canvases, {data.VAL_COUNT} validation canvases "
                                 f"(held-out digits), seed {data.SEED}",
                      "knobs": "score_threshold 0.05, nms_iou 0.5, max_detections 100"}
    for runtime in runtimes:
        rows = manifest.setdefault(runtime, {})
        rows.update({k: v for k, v in old.get(runtime, {}).items()
                     if not any(k.startswith(f"ssd_digits_w{w}_") for w in widths)})
        for width in widths:
            if not det.weights_path(width).exists():
                continue
            for res in RESOLUTIONS:
                for precision in PRECISIONS:
                    v = workload.variant(width=width, resolution=res, precision=precision)
                    key = f"ssd_digits_w{width}_r{res}_{precision}"
                    rows[key] = variant_map(workload, v, runtime)
                    print(f"  {runtime} {key}: {rows[key]}", flush=True)
    for runtime in runtimes:  # a stable order, whatever was re-measured
        manifest[runtime] = dict(sorted(manifest[runtime].items()))
    if write:
        path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", nargs="*", default=["onnxruntime", "litert"])
    parser.add_argument("--widths", type=float, nargs="*", default=list(WIDTHS))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    evaluate(tuple(args.runtimes), write=not args.no_write, widths=tuple(args.widths))


if __name__ == "__main__":
    main()
