"""mAP / AP50 of the shipped digit-canvas detectors with ONNX Runtime and LiteRT.

    python benchmarks/detection_accuracy.py [--runtimes onnxruntime litert]

Runs each variant (width x resolution x precision, default knobs) over the 400 validation
canvases through the workload's own responder (decode + NMS + MLPerf records) and scorer
(COCO mAP as accuracy-coco.py computes it), outside LoadGen, one thread, batches of 50.
The same figures as ``workloads/digit_canvases/assets/manifest.json`` (which this does not
rewrite); ``ms/img`` is the batched wall time per image, a rough speed order, not a
LoadGen latency.
"""
from __future__ import annotations

import argparse

from workloads.digit_canvases.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", nargs="*", default=["onnxruntime", "litert"])
    args = parser.parse_args()
    table = evaluate(tuple(args.runtimes), write=False)
    print(f"\n{'runtime':12} {'variant':28} {'mAP':>7} {'AP50':>7} {'ms/img':>7}")
    for runtime in args.runtimes:
        for name, row in table.get(runtime, {}).items():
            print(f"{runtime:12} {name:28} {row['mAP']:7.4f} {row['AP50']:7.4f} "
                  f"{row['ms_per_image_batched']:7.2f}")


if __name__ == "__main__":
    main()
