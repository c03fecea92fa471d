"""The small DLRM as plain data: its shapes, and an ONNX graph built from its weights.

DLRM (Naumov et al. 2019, MLPerf's ``dlrm``): a bottom MLP turns the 13 dense features into
a ``dim``-vector; each of the 26 categorical features looks up a ``dim``-row of its table;
the dot products of every pair of those 27 vectors (strict lower triangle: 351) join the
bottom output into the top MLP, whose sigmoid is the click probability.

The graph keeps every table in one concatenated matrix (one row offset per feature), so an
[N, 26] index input becomes one ``Gather``: never ``EmbeddingBag``, which exports to an ONNX
``Loop`` and has no TVM importer. Table precision is a graph property:

``fp32``  the table as trained;
``fp16``  the table stored as float16, gathered rows cast to float32 (half the bytes read);
``int8``  row-wise asymmetric 8-bit (FBGEMM's fused rowwise layout: per row a scale and a
          bias, ``w = q * scale + bias``), dequantised in the graph after the gather.

The MLPs stay float32 in every variant. ``train.py`` and this builder share ``shapes`` so
the weights file and the graph can never disagree.
"""
from __future__ import annotations

import numpy as np

from workloads.click_logs.data import NUM_DENSE, NUM_SPARSE, VOCAB

DIMS = (8, 16, 32)
PRECISIONS = ("fp32", "fp16", "int8")
OPSET = 17


def mlp_widths(dim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(bottom, top) layer output widths: the MLPs scale with the embedding dimension, so
    the family spans cost as well as table size."""
    return (4 * dim, dim), (8 * dim, 4 * dim, 1)


def shapes(dim: int) -> dict[str, tuple[int, ...]]:
    """Every weight of the DLRM at this embedding dimension (Gemm layout: [out, in])."""
    bottom, top = mlp_widths(dim)
    out: dict[str, tuple[int, ...]] = {"emb": (sum(VOCAB), dim)}
    width = NUM_DENSE
    for i, w in enumerate(bottom):
        out[f"bot{i}.w"], out[f"bot{i}.b"] = (w, width), (w,)
        width = w
    width = dim + (NUM_SPARSE + 1) * NUM_SPARSE // 2
    for i, w in enumerate(top):
        out[f"top{i}.w"], out[f"top{i}.b"] = (w, width), (w,)
        width = w
    return out


def row_offsets() -> np.ndarray:
    """Where each feature's table starts in the concatenated one."""
    return np.concatenate([[0], np.cumsum(VOCAB)[:-1]]).astype(np.int64)


def lower_triangle() -> np.ndarray:
    """Flat indices of the strict lower triangle of a 27 x 27 matrix (DLRM's dot features)."""
    n = NUM_SPARSE + 1
    rows, cols = np.tril_indices(n, -1)
    return (rows * n + cols).astype(np.int64)


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise asymmetric uint8: (q [V, D] uint8, scale [V, 1], bias [V, 1]) float32."""
    lo = table.min(axis=1, keepdims=True)
    hi = table.max(axis=1, keepdims=True)
    scale = np.where(hi > lo, (hi - lo) / 255.0, 1.0).astype(np.float32)
    q = np.clip(np.rint((table - lo) / scale), 0, 255).astype(np.uint8)
    return q, scale, lo.astype(np.float32)


def check(weights: dict[str, np.ndarray], dim: int) -> None:
    for key, shape in shapes(dim).items():
        if key not in weights:
            raise KeyError(f"click_logs: DLRM weights lack {key!r} (dim {dim})")
        if tuple(weights[key].shape) != shape:
            raise ValueError(f"click_logs: DLRM weight {key!r} has shape "
                             f"{weights[key].shape}, expected {shape}")


def build_onnx(weights: dict[str, np.ndarray], dim: int, precision: str = "fp32"):
    """An ONNX DLRM: inputs ``dense`` float32 [N, 13], ``sparse`` int64 [N, 26]; output
    ``probability`` float32 [N, 1]. The batch dimension is symbolic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if precision not in PRECISIONS:
        raise ValueError(f"click_logs: precision {precision!r}; one of {PRECISIONS}")
    check(weights, dim)
    bottom, top = mlp_widths(dim)
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    # Embeddings: one Gather over the concatenated table, then dequantise what was read.
    idx = node("Add", ["sparse", const("offsets", row_offsets())], "rows")
    table = weights["emb"].astype(np.float32)
    if precision == "fp32":
        emb = node("Gather", [const("emb", table), idx], "emb_rows")
    elif precision == "fp16":
        half = node("Gather", [const("emb_fp16", table.astype(np.float16)), idx], "emb_half")
        emb = node("Cast", [half], "emb_rows", to=TensorProto.FLOAT)
    else:
        q, scale, bias = quantize_rows(table)
        codes = node("Gather", [const("emb_q", q), idx], "emb_q_rows")
        codes = node("Cast", [codes], "emb_q_float", to=TensorProto.FLOAT)
        scaled = node("Mul", [codes, node("Gather", [const("emb_scale", scale), idx],
                                          "emb_scale_rows")], "emb_scaled")
        emb = node("Add", [scaled, node("Gather", [const("emb_bias", bias), idx],
                                        "emb_bias_rows")], "emb_rows")
    # emb: [N, 26, dim]; with the [N, 1, dim] bottom output: [N, 27, dim]

    x = "dense"
    for i in range(len(bottom)):
        x = node("Gemm", [x, const(f"bot{i}.w", weights[f"bot{i}.w"].astype(np.float32)),
                          const(f"bot{i}.b", weights[f"bot{i}.b"].astype(np.float32))],
                 f"bot{i}.pre", transB=1)
        x = node("Relu", [x], f"bot{i}.out")
    bottom_out = x
    stacked = node("Concat", [node("Unsqueeze", [bottom_out, const("axis1", np.array([1], np.int64))],
                                   "bot.unsq"), emb], "features", axis=1)
    gram = node("MatMul", [stacked, node("Transpose", [stacked], "features.t", perm=[0, 2, 1])], "gram")
    flat = node("Reshape", [gram, const("gram_shape", np.array([0, (NUM_SPARSE + 1) ** 2], np.int64))],
                "gram.flat")
    dots = node("Gather", [flat, const("tril", lower_triangle())], "dots", axis=1)
    x = node("Concat", [bottom_out, dots], "top.in", axis=1)
    for i in range(len(top)):
        x = node("Gemm", [x, const(f"top{i}.w", weights[f"top{i}.w"].astype(np.float32)),
                          const(f"top{i}.b", weights[f"top{i}.b"].astype(np.float32))],
                 f"top{i}.pre", transB=1)
        if i < len(top) - 1:
            x = node("Relu", [x], f"top{i}.out")
    node("Sigmoid", [x], "probability")

    graph = helper.make_graph(
        nodes, f"dlrm_d{dim}_{precision}",
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["N", NUM_DENSE]),
         helper.make_tensor_value_info("sparse", TensorProto.INT64, ["N", NUM_SPARSE])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tuner")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
