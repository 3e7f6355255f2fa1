"""The EfficientNet-Lite backbone as an ONNX graph built directly from its weight file: no torch.

The network is written out node by node from the architecture (the Lite variant of EfficientNet:
ReLU6, no squeeze-and-excitation, stem and head not scaled, TensorFlow "SAME" padding computed for
the fixed input size) with batch normalisation folded into each convolution. The graph's outputs are
bunga's embedding (pooled head features and the pooled outputs of the tapped blocks, each part of
unit length, the whole of unit length) and the ImageNet probabilities. ``make test`` checks it
against the torch implementation the weights were trained with (the dev extra keeps torch for that
check only)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bunga.errors import BungaError
from bunga.files import atomic_write_bytes
from bunga.models.weights import read_state_dict

BN_EPS = 1e-3
STEM, HEAD = 32, 1280
# EfficientNet-Lite stages: repeats, kernel, stride, expansion, input and output channels (Lite0).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
VARIANTS = {"efficientnet-lite0": (1.0, 1.0, 224), "efficientnet-lite1": (1.0, 1.1, 240)}  # width, depth, size
VARIANTS |= {"efficientnet-lite2": (1.1, 1.2, 260)}


@dataclass(frozen=True)
class Block:
    """One inverted-residual block."""

    kernel: int
    stride: int
    expand: int
    inputs: int
    outputs: int


def _round_filters(filters: int, width: float) -> int:
    scaled = filters * width
    return max(8, int(scaled + 4) // 8 * 8)


def blocks(width: float = 1.0, depth: float = 1.0) -> list[Block]:
    """The blocks of an EfficientNet-Lite variant, in order (the first and last stage never repeat more)."""
    out = []
    for index, (repeats, kernel, stride, expand, inputs, outputs) in enumerate(STAGES):
        first_or_last = index in (0, len(STAGES) - 1)
        n = repeats if first_or_last else math.ceil(depth * repeats)
        cin = STEM if index == 0 else _round_filters(inputs, width)
        cout = _round_filters(outputs, width)
        out.append(Block(kernel, stride, expand, cin, cout))
        out.extend(Block(kernel, 1, expand, cout, cout) for _ in range(n - 1))
    return out


def same_pads(size: int, kernel: int, stride: int) -> list[int]:
    """TensorFlow "SAME" padding as ONNX ``pads`` (top, left, bottom, right) for a square input."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return [total // 2, total // 2, total - total // 2, total - total // 2]


class _Builder:
    """Accumulates nodes and initializers; every convolution has its batch norm folded in."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        from onnx import helper, numpy_helper

        self.state, self.helper, self.numpy_helper = state, helper, numpy_helper
        self.nodes: list[object] = []
        self.initializers: dict[str, object] = {}
        self.constant("relu6.min", np.array(0.0, dtype=np.float32))
        self.constant("relu6.max", np.array(6.0, dtype=np.float32))
        self.constant("norm.eps", np.array(1e-12, dtype=np.float32))
        self._count = 0

    def constant(self, name: str, value: np.ndarray) -> str:
        if name not in self.initializers:
            self.initializers[name] = self.numpy_helper.from_array(value, name)
        return name

    def node(self, op: str, inputs: list[str], name: str | None = None, **attrs: Any) -> str:
        self._count += 1
        out = name or f"{op.lower()}_{self._count}"
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=f"n{self._count}_{op}", **attrs))
        return out

    def weight(self, key: str) -> np.ndarray:
        if key not in self.state:
            raise BungaError(f"the weights file has no {key}: not an EfficientNet-Lite checkpoint")
        return self.state[key].astype(np.float64)

    def conv_bn(self, x: str, conv: str, bn: str, size: int, stride: int, groups: int, relu6: bool) -> str:
        """Convolution with its batch norm folded in, then ReLU6 when asked."""
        w = self.weight(f"{conv}.weight")
        scale = self.weight(f"{bn}.weight") / np.sqrt(self.weight(f"{bn}.running_var") + BN_EPS)
        bias = self.weight(f"{bn}.bias") - self.weight(f"{bn}.running_mean") * scale
        w_name = self.constant(f"{conv}.w", (w * scale[:, None, None, None]).astype(np.float32))
        b_name = self.constant(f"{conv}.b", bias.astype(np.float32))
        kernel = int(w.shape[-1])
        y = self.node(
            "Conv",
            [x, w_name, b_name],
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=same_pads(size, kernel, stride),
            group=groups,
        )
        return self.node("Clip", [y, "relu6.min", "relu6.max"]) if relu6 else y

    def unit(self, x: str) -> str:
        """``x / max(||x||, 1e-12)`` along axis 1."""
        norm = self.node("ReduceL2", [x], axes=[1], keepdims=1)
        return self.node("Div", [x, self.node("Max", [norm, "norm.eps"])])

    def pool(self, x: str) -> str:
        return self.node("ReduceMean", [x], axes=[2, 3], keepdims=0)

    def trunk(self, x: str, size: int, taps: tuple[int, ...], spec: list[Block]) -> tuple[str, list[str]]:
        """Head features (pooled, before the classifier) and the pooled outputs of ``taps``."""
        h = self.conv_bn(x, "_conv_stem", "_bn0", size, 2, 1, relu6=True)
        size = math.ceil(size / 2)
        pooled = []
        for index, block in enumerate(spec):
            prefix = f"_blocks.{index}"
            y = h
            if block.expand != 1:
                y = self.conv_bn(y, f"{prefix}._expand_conv", f"{prefix}._bn0", size, 1, 1, relu6=True)
            channels = block.inputs * block.expand
            y = self.conv_bn(y, f"{prefix}._depthwise_conv", f"{prefix}._bn1", size, block.stride, channels, True)
            size = math.ceil(size / block.stride)
            y = self.conv_bn(y, f"{prefix}._project_conv", f"{prefix}._bn2", size, 1, 1, relu6=False)
            if block.stride == 1 and block.inputs == block.outputs:
                y = self.node("Add", [y, h])
            h = y
            if index in taps:
                pooled.append(self.unit(self.pool(h)))
        head = self.conv_bn(h, "_conv_head", "_bn1", size, 1, 1, relu6=True)
        return self.pool(head), pooled


def build_backbone(
    weights: Path, taps: tuple[int, ...], variant: str = "efficientnet-lite0", tta: bool = False
) -> bytes:
    """The backbone graph: input ``input`` (N, 3, S, S) preprocessed photos; outputs ``embedding``
    and ``imagenet`` (the 1000 ImageNet probabilities). With ``tta`` the embedding averages the
    photo and its mirror image."""
    import onnx
    from onnx import TensorProto, helper

    width, depth, size = VARIANTS[variant]
    spec = blocks(width, depth)
    b = _Builder(read_state_dict(weights))
    features, taps_out = b.trunk("input", size, taps, spec)
    scale = b.constant("embedding.scale", np.array(math.sqrt(1 + len(taps)), dtype=np.float32))
    embedding = b.node("Div", [b.node("Concat", [b.unit(features), *taps_out], axis=1), scale])
    if tta:
        flipped = b.node(
            "Slice",
            [
                "input",
                b.constant("flip.starts", np.array([-1], dtype=np.int64)),
                b.constant("flip.ends", np.array([-(2**62)], dtype=np.int64)),
                b.constant("flip.axes", np.array([3], dtype=np.int64)),
                b.constant("flip.steps", np.array([-1], dtype=np.int64)),
            ],
        )
        f2, t2 = b.trunk(flipped, size, taps, spec)
        mirrored = b.node("Div", [b.node("Concat", [b.unit(f2), *t2], axis=1), scale])
        embedding = b.unit(b.node("Add", [embedding, mirrored]))
    b.node("Identity", [embedding], name="embedding")
    fc_w = b.constant("_fc.w", b.weight("_fc.weight").astype(np.float32))
    fc_b = b.constant("_fc.b", b.weight("_fc.bias").astype(np.float32))
    logits = b.node("Gemm", [features, fc_w, fc_b], transB=1)
    b.node("Softmax", [logits], name="imagenet", axis=1)
    classes = int(b.state["_fc.weight"].shape[0])
    dim = HEAD + sum(spec[i].outputs for i in taps)
    graph = helper.make_graph(
        b.nodes,  # type: ignore[arg-type]
        variant.replace("-", "_"),
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim]),
            helper.make_tensor_value_info("imagenet", TensorProto.FLOAT, ["batch", classes]),
        ],
        initializer=list(b.initializers.values()),  # type: ignore[arg-type]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bunga")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def build_once(
    path: Path, weights: Path, taps: tuple[int, ...], tta: bool = False, variant: str = "efficientnet-lite0"
) -> Path:
    """Build the backbone graph to ``path`` unless it is there already."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, build_backbone(weights, taps, variant, tta=tta))
    return path
