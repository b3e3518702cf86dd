"""A small TensorFlow re-implementation of the DeepLab reference graphs, for the conversion
tests: the ops and variable names of tensorflow/models research/deeplab (``core/xception.py``,
``core/resnet_v1_beta.py``, slim's ``mobilenet_v2``, ``model.py``'s ASPP / decoder / logits and
``core/dense_prediction_cell.py``), written from the reference code, independent of atrous.

Variables are made (random, seeded) the first time the graph uses their name, as slim makes
them; :meth:`Graph.save` writes them as a TF checkpoint with ``tf.raw_ops.SaveV2``. Tensors
are NHWC; the graph runs eagerly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tensorflow as tf

Act = Callable[[tf.Tensor], tf.Tensor] | None
RELU, RELU6 = tf.nn.relu, tf.nn.relu6


class Graph:
    """``dtype`` float64 runs the graph in double precision (with the same float32 variables):
    what remains of a difference then is the conversion's, not float32 rounding's."""

    def __init__(self, seed: int = 0, dtype: tf.DType = tf.float32) -> None:
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.variables: dict[str, np.ndarray] = {}
        self._scopes: list[str] = []

    @contextmanager
    def scope(self, name: str) -> Iterator[None]:
        self._scopes.append(name)
        try:
            yield
        finally:
            self._scopes.pop()

    def var(self, name: str, shape: Sequence[int], init: Callable[[tuple], np.ndarray]):
        full = "/".join([*self._scopes, name])
        if full not in self.variables:
            self.variables[full] = init(tuple(shape)).astype(np.float32)
        assert self.variables[full].shape == tuple(shape), full
        return tf.constant(self.variables[full], dtype=self.dtype)

    def _weights(self, name: str, shape: Sequence[int], fan_in: int):
        return self.var(name, shape, lambda s: self.rng.normal(0.0, (2.0 / fan_in) ** 0.5, s))

    def batch_norm(self, x, eps: float):
        c = x.shape[-1]
        u = self.rng.uniform
        with self.scope("BatchNorm"):
            gamma = self.var("gamma", (c,), lambda s: u(0.5, 1.5, s))
            beta = self.var("beta", (c,), lambda s: u(-0.3, 0.3, s))
            # Moving statistics near the batch's own (as training leaves them), so that deep
            # random networks keep O(1) activations and an absolute tolerance means something.
            # The variance is floored at half the layer's mean: on small feature maps a channel
            # can be nearly constant, and dividing by its variance would amplify rounding.
            seen = x.numpy().reshape(-1, c)
            spread = np.maximum(seen.var(0), 0.5 * seen.var(0).mean()) + 1e-3
            mean = self.var("moving_mean", (c,), lambda s: seen.mean(0) + u(-0.1, 0.1, s))
            var = self.var("moving_variance", (c,), lambda s: spread * u(0.8, 1.25, s))
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, eps)

    def conv(self, x, name, out, k, *, stride=1, rate=1, padding="SAME", eps=None, act=None):
        """slim.conv2d; ``padding="FIXED"`` is ``resnet_utils.conv2d_same``. ``eps=None``: no
        BN, with biases (the logits)."""
        with self.scope(name):
            w = self._weights("weights", (k, k, x.shape[-1], out), k * k * x.shape[-1])
            if padding == "FIXED":
                padding = "SAME" if stride == 1 else "VALID"
                x = fixed_padding(x, k, rate) if stride > 1 else x
            y = tf.nn.conv2d(x, w, stride, padding, dilations=rate)
            if eps is None:
                y = y + self.var("biases", (out,), lambda s: self.rng.normal(0, 0.1, s))
            else:
                y = self.batch_norm(y, eps)
        return act(y) if act is not None else y

    def depthwise(self, x, name, *, stride=1, rate=(1, 1), padding="SAME", eps, act):
        """slim.separable_conv2d with num_outputs=None (3x3, depth multiplier 1) + BN."""
        with self.scope(name):
            w = self._weights("depthwise_weights", (3, 3, x.shape[-1], 1), 9)
            y = tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], padding, dilations=rate)
            y = self.batch_norm(y, eps)
        return act(y) if act is not None else y

    def save(self, prefix: Path, extra: dict[str, np.ndarray] | None = None) -> Path:
        tensors = {**self.variables, **(extra or {})}
        names = sorted(tensors)
        tf.raw_ops.SaveV2(
            prefix=str(prefix),
            tensor_names=names,
            shape_and_slices=[""] * len(names),
            tensors=[tf.constant(tensors[n]) for n in names],
        )
        return prefix


class Strides:
    """``stack_blocks_dense``'s rule (xception, resnet_utils, slim mobilenet): once the output
    stride is reached, a unit's stride becomes 1 and multiplies the rate of the units after it."""

    def __init__(self, target: int, current: int = 1) -> None:
        self.target, self.current, self.rate = target, current, 1

    def unit(self, stride: int) -> tuple[int, int]:
        """The (stride, rate) a unit of nominal ``stride`` runs with."""
        if self.current == self.target:
            rate = self.rate
            self.rate *= stride
            return 1, rate
        self.current *= stride
        return stride, 1


def fixed_padding(x, kernel: int, rate: int = 1):
    """``xception.fixed_padding`` / ``resnet_utils.conv2d_same``: symmetric explicit padding."""
    total = kernel + (kernel - 1) * (rate - 1) - 1
    beg = total // 2
    return tf.pad(x, [[0, 0], [beg, total - beg], [beg, total - beg], [0, 0]])


def resize(x, size):
    """``tf.image.resize_bilinear(..., align_corners=True)``; TF's op computes in float32, so
    float64 inputs go through the same interpolation written as two matrix products."""
    if x.dtype != tf.float64:
        return tf.compat.v1.image.resize_bilinear(x, size, align_corners=True)
    rows, cols = _interpolation(x.shape[1], size[0]), _interpolation(x.shape[2], size[1])
    return tf.einsum("ih,bhwc,jw->bijc", rows, x, cols)


def _interpolation(n: int, m: int) -> np.ndarray:
    """[m, n] weights of align_corners=True linear interpolation from n samples to m."""
    out = np.zeros((m, n))
    for i in range(m):
        pos = i * (n - 1) / (m - 1) if m > 1 else 0.0
        lo = min(int(np.floor(pos)), n - 1)
        hi, frac = min(lo + 1, n - 1), pos - lo
        out[i, lo] += 1 - frac
        out[i, hi] += frac
    return out


def split_separable(g: Graph, x, filters: int, rate, scope: str, eps: float = 1e-5):
    """``utils.split_separable_conv2d``: depthwise + BN + ReLU, pointwise + BN + ReLU."""
    rate = (rate, rate) if isinstance(rate, int) else tuple(rate)
    x = g.depthwise(x, scope + "_depthwise", rate=rate, eps=eps, act=RELU)
    return g.conv(x, scope + "_pointwise", filters, 1, eps=eps, act=RELU)


# --- Xception (core/xception.py) -------------------------------------------------------------

_XCEPTION_ENTRY = {
    41: [(128, 2), (256, 2), (728, 2)],
    65: [(128, 2), (256, 2), (728, 2)],
    71: [(128, 2), (256, 1), (256, 2), (728, 1), (728, 2)],
}
_XCEPTION_MIDDLE = {41: 8, 65: 16, 71: 16}
_XCEPTION_DECODER_TAP = {41: "entry_flow/block2", 65: "entry_flow/block2", 71: "entry_flow/block3"}
"""feature_extractor.py's decoder end points: ``<block>/unit_1/xception_module/
separable_conv2_pointwise``."""


def _xception_blocks(depth: int) -> list[tuple[str, list[int], str, bool, int, int]]:
    """(scope, depth_list, skip, activation_fn_in_separable_conv, num_units, stride)."""
    blocks = [
        (f"entry_flow/block{i + 1}", [c] * 3, "conv", False, 1, s)
        for i, (c, s) in enumerate(_XCEPTION_ENTRY[depth])
    ]
    blocks.append(("middle_flow/block1", [728] * 3, "sum", False, _XCEPTION_MIDDLE[depth], 1))
    blocks.append(("exit_flow/block1", [728, 1024, 1024], "conv", False, 1, 2))
    blocks.append(("exit_flow/block2", [1536, 1536, 2048], "none", True, 1, 1))
    return blocks


def _separable_conv2d_same(g, x, depth, stride, rate, scope, act, eps=1e-3):
    if stride == 1:
        y = g.depthwise(x, scope + "_depthwise", rate=(rate, rate), eps=eps, act=act)
    else:
        y = fixed_padding(x, 3, rate)
        y = g.depthwise(y, scope + "_depthwise", stride=stride, padding="VALID", eps=eps, act=act)
    return g.conv(y, scope + "_pointwise", depth, 1, eps=eps, act=act)


def _xception_module(g, x, depths, skip, inside, stride, rate):
    residual, tap = x, None
    for i in range(3):
        if not inside:
            residual = tf.nn.relu(residual)
        s = stride if i == 2 else 1
        residual = _separable_conv2d_same(
            g, residual, depths[i], s, rate, f"separable_conv{i + 1}", RELU if inside else None
        )
        if i == 1:
            tap = residual  # the end point .../separable_conv2_pointwise
    if skip == "conv":
        shortcut = g.conv(x, "shortcut", depths[-1], 1, stride=stride, eps=1e-3)
        return residual + shortcut, tap
    return (residual + x if skip == "sum" else residual), tap


def xception(g: Graph, x, depth: int, *, width: float, output_stride: int):
    """Features and the decoder's low-level end point (the block going from OS4 to OS8)."""

    def d(c: int) -> int:
        return max(1, int(c * width + 0.5))

    scope = f"xception_{depth}"
    with g.scope(scope):
        x = g.conv(x, "entry_flow/conv1_1", d(32), 3, stride=2, padding="FIXED", eps=1e-3, act=RELU)
        x = g.conv(x, "entry_flow/conv1_2", d(64), 3, padding="FIXED", eps=1e-3, act=RELU)
        plan, low = Strides(output_stride // 2), None
        for bscope, depths, skip, inside, units, stride in _xception_blocks(depth):
            for u in range(units):
                with g.scope(f"{bscope}/unit_{u + 1}/xception_module"):
                    s, r = plan.unit(stride)
                    x, tap = _xception_module(g, x, [d(c) for c in depths], skip, inside, s, r)
                    if bscope == _XCEPTION_DECODER_TAP[depth]:
                        low = tap
    return x, low


# --- MobileNetV2 (slim nets/mobilenet) -------------------------------------------------------

_MOBILENET = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)]
_MOBILENET += [(6, 160, 3, 2), (6, 320, 1, 1)]


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mobilenet_v2(g: Graph, x, *, output_stride: int):
    """slim ``mobilenet_v2`` to ``layer_18`` (depth multiplier 1) and ``layer_4/depthwise_output``
    (the decoder's end point)."""
    eps, low = 1e-3, None
    with g.scope("MobilenetV2"):
        x = g.conv(x, "Conv", 32, 3, stride=2, eps=eps, act=RELU6)
        plan, n = Strides(output_stride, current=2), 0
        for t, c, repeats, first_stride in _MOBILENET:
            for i in range(repeats):
                s, r = plan.unit(first_stride if i == 0 else 1)
                name = "expanded_conv" + (f"_{n}" if n else "")
                with g.scope(name):
                    prev = x.shape[-1]
                    inner = prev if t == 1 else _make_divisible(prev * t)
                    y = x
                    if inner > prev:
                        y = g.conv(y, "expand", inner, 1, eps=eps, act=RELU6)
                    y = g.depthwise(y, "depthwise", stride=s, rate=(r, r), eps=eps, act=RELU6)
                    if n == 2:
                        low = y  # layer_4/depthwise_output
                    y = g.conv(y, "project", c, 1, eps=eps)
                    x = y + x if s == 1 and prev == c else y
                n += 1
    return x, low


# --- ResNet-v1 beta (core/resnet_v1_beta.py) -------------------------------------------------


def resnet_v1_beta(g: Graph, x, layers: int, *, width: float, output_stride: int, multi_grid):
    """Features and ``block1/unit_2/bottleneck_v1/conv3`` (before the residual sum)."""

    def d(c: int) -> int:
        return max(1, int(c * width + 0.5))

    units = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[layers]
    eps, low = 1e-5, None
    with g.scope(f"resnet_v1_{layers}"):
        x = g.conv(x, "conv1_1", d(64), 3, stride=2, padding="FIXED", eps=eps, act=RELU)
        x = g.conv(x, "conv1_2", d(64), 3, padding="FIXED", eps=eps, act=RELU)
        x = g.conv(x, "conv1_3", d(128), 3, padding="FIXED", eps=eps, act=RELU)
        x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        plan = Strides(output_stride // 4)
        for b, (n, base) in enumerate(zip(units, (64, 128, 256, 512), strict=True)):
            for u in range(n):
                unit_rate = multi_grid[u] if b == 3 else 1
                s, r = plan.unit((2 if b < 3 else 1) if u == n - 1 else 1)
                with g.scope(f"block{b + 1}/unit_{u + 1}/bottleneck_v1"):
                    depth = d(base) * 4
                    if x.shape[-1] == depth:
                        shortcut = x[:, ::s, ::s, :]  # resnet_utils.subsample
                    else:
                        shortcut = g.conv(x, "shortcut", depth, 1, stride=s, eps=eps)
                    y = g.conv(x, "conv1", d(base), 1, eps=eps, act=RELU)
                    y = g.conv(
                        y, "conv2", d(base), 3, stride=s, rate=r * unit_rate, padding="FIXED",
                        eps=eps, act=RELU,
                    )  # fmt: skip
                    y = g.conv(y, "conv3", depth, 1, eps=eps)
                    if b == 0 and u == 1:
                        low = y
                    x = tf.nn.relu(shortcut + y)
    return x, low


# --- model.py: ASPP / DPC, decoder, logits ---------------------------------------------------


def aspp(g: Graph, f, *, rates: Sequence[int], separable: bool, depth: int = 256):
    eps = 1e-5
    pooled = tf.reduce_mean(f, [1, 2], keepdims=True)  # the crop is the input: the whole map
    pooled = g.conv(pooled, "image_pooling", depth, 1, eps=eps, act=RELU)
    branches = [resize(pooled, f.shape[1:3]), g.conv(f, "aspp0", depth, 1, eps=eps, act=RELU)]
    for i, rate in enumerate(rates, 1):
        if separable:
            branches.append(split_separable(g, f, depth, rate, f"aspp{i}"))
        else:
            branches.append(g.conv(f, f"aspp{i}", depth, 3, rate=rate, eps=eps, act=RELU))
    return g.conv(tf.concat(branches, 3), "concat_projection", depth, 1, eps=eps, act=RELU)


def dense_prediction_cell(g: Graph, f, cell, *, output_stride: int, depth: int = 256):
    multiplier = 16 // output_stride
    branches = []
    with g.scope("meta_architecture"):
        for i, op in enumerate(cell):
            x = f if op["input"] < 0 else branches[op["input"]]
            if op["op"] != "conv":
                raise NotImplementedError(op)
            if op["kernel"] in (1, [1, 1]):
                branches.append(g.conv(x, f"branch{i}", depth, 1, eps=1e-5, act=RELU))
            else:
                rate = [r * multiplier for r in op["rate"]]
                branches.append(split_separable(g, x, depth, rate, f"branch{i}"))
        return g.conv(tf.concat(branches, 3), "concat_projection", depth, 1, eps=1e-5, act=RELU)


def decoder(g: Graph, x, low, *, separable: bool):
    eps = 1e-5
    with g.scope("decoder"):
        low = g.conv(low, "feature_projection0", 48, 1, eps=eps, act=RELU)
        x = tf.concat([resize(x, low.shape[1:3]), resize(low, low.shape[1:3])], 3)
        if separable:
            x = split_separable(g, x, 256, 1, "decoder_conv0")
            return split_separable(g, x, 256, 1, "decoder_conv1")
        with g.scope("decoder_conv0"):
            x = g.conv(x, "decoder_conv0_1", 256, 3, eps=eps, act=RELU)
            return g.conv(x, "decoder_conv0_2", 256, 3, eps=eps, act=RELU)


def logits(g: Graph, x, num_classes: int, size):
    return resize(g.conv(x, "logits/semantic", num_classes, 1), size)
