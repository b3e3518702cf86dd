"""ABC-CNN (Chen, Wang, Chen, Gao, Xu, Nevatia, arXiv 1511.05960, 2015): visual question
answering with question-guided attention by configurable convolution.

An atrous backbone gives the image's feature map (VGG-19 in the paper, or a fully
convolutional segmentation network's map); an LSTM over word embeddings embeds the question;
the embedding is projected from the semantic to the visual space into "configurable" kernels,
one ``D x k x k`` kernel per question, convolved with that image's feature map (a batched
per-sample convolution: :func:`configurable_conv`); a spatial softmax over the responses is the
question-guided attention map. The attention-weighted features, the globally pooled image
features and the question embedding are fused into a classifier over the answers.

No official code exists; the facts come from the paper's abstract and the US patent 9965705
(see docs/vqa.md). Constants the sources did not give are marked "chosen"; those remembered
but not checked against the paper "recalled, unverified".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from .factory import _backbone

PAD = 0
"""Token id of padding in a batch of questions (``[N, T]``, padded on the right)."""


def scaled_tanh(x: Tensor) -> Tensor:
    """LeCun's scaled tanh ``1.7159 tanh(2x/3)``, one of the kernel projection's activations
    (recalled, unverified)."""
    return 1.7159 * torch.tanh(2.0 * x / 3.0)


KERNEL_ACTIVATIONS = {"tanh": scaled_tanh, "sigmoid": torch.sigmoid}
"""The configurable kernels' activation after the linear projection (both recalled,
unverified: the patent's claims name a sigmoid and a scaled tanh)."""


def configurable_conv(features: Tensor, kernels: Tensor) -> Tensor:
    """Convolve each sample's ``[D, H, W]`` features with its own ``[D, k, k]`` kernel (one
    output channel, zero padding ``k // 2``): ``[N, D, H, W], [N, D, k, k] -> [N, 1, H, W]``.
    One grouped convolution: the batch becomes ``N`` groups of ``D`` channels."""
    n, d, h, w = features.shape
    if kernels.shape[:2] != (n, d) or kernels.shape[-1] != kernels.shape[-2]:
        raise ValueError(
            f"configurable kernels {tuple(kernels.shape)} do not fit features "
            f"{tuple(features.shape)}: expected [{n}, {d}, k, k]"
        )
    k = kernels.shape[-1]
    out = F.conv2d(features.reshape(1, n * d, h, w), kernels, padding=k // 2, groups=n)
    return out.reshape(n, 1, h, w)


def spatial_softmax(logits: Tensor) -> Tensor:
    """``[N, 1, H, W]`` responses -> attention maps ``[N, H, W]``, each summing to 1."""
    n, _, h, w = logits.shape
    return logits.reshape(n, h * w).float().softmax(dim=1).reshape(n, h, w).to(logits.dtype)


def _coordinates(features: Tensor) -> Tensor:
    """Two channels of normalised ``x`` and ``y`` in ``[-1, 1]`` at the features' size."""
    n, _, h, w = features.shape
    ys = torch.linspace(-1.0, 1.0, h, device=features.device, dtype=features.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=features.device, dtype=features.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))
    return grid[None].expand(n, 2, h, w)


class QuestionEncoder(nn.Module):
    """Word embeddings, then an LSTM; the question's embedding is its last hidden state (the
    padding on the right is packed away, so it does not count)."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)

    def forward(self, questions: Tensor) -> Tensor:
        lengths = (questions != PAD).sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(
            self.embed(questions), lengths, batch_first=True, enforce_sorted=False
        )
        _, (hidden, _) = self.lstm(packed)
        return hidden[-1]


class ABCCNN(nn.Module):
    """``forward(images [N,3,H,W], questions [N,T] token ids, 0 = padding)`` -> answer logits
    ``[N, num_answers]``; :meth:`attention_maps` gives the question-guided attention
    ``[N, h, w]`` at the features' size (each map sums to 1). ``use_attention=False`` is the
    same network without the attention branch: the classifier sees the question embedding and
    the globally pooled features only (the ablation's baseline)."""

    def __init__(
        self,
        backbone: nn.Module,
        *,
        vocab_size: int,
        num_answers: int,
        kernel_size: int = 3,
        channels: int = 64,
        embed_dim: int = 64,
        hidden: int = 128,
        fusion: int = 256,
        kernel_activation: str = "tanh",
        coordinates: bool = False,
        use_attention: bool = True,
        freeze_backbone: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"abc_cnn: kernel_size must be odd (same-size maps): {kernel_size}")
        if kernel_activation not in KERNEL_ACTIVATIONS:
            raise ValueError(
                f"abc_cnn: kernel_activation {kernel_activation!r}; expected one of "
                f"{', '.join(KERNEL_ACTIVATIONS)}"
            )
        self.backbone, self.vocab_size, self.num_answers = backbone, vocab_size, num_answers
        self.kernel_size, self.use_attention = kernel_size, use_attention
        self.kernel_activation, self.coordinates = kernel_activation, coordinates
        self.freeze_backbone = freeze_backbone
        backbone.requires_grad_(not freeze_backbone)
        self.reduce = nn.Sequential(
            nn.Conv2d(backbone.feature_channels["out"], channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.dim = channels + (2 if coordinates else 0)
        self.question = QuestionEncoder(vocab_size, embed_dim, hidden)
        # semantic -> visual space: one D x k x k kernel per question
        self.kernels = nn.Linear(hidden, self.dim * kernel_size**2)
        self.gain = nn.Parameter(torch.ones(()))
        fused = hidden + self.dim * (2 if use_attention else 1)
        self.classifier = nn.Sequential(
            nn.Linear(fused, fusion), nn.ReLU(inplace=True), nn.Linear(fusion, num_answers)
        )

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    @property
    def output_strides(self) -> tuple[int, ...]:
        return (8, 16, 32)

    def set_output_stride(self, output_stride: int) -> None:
        self.backbone.set_output_stride(output_stride)

    def train(self, mode: bool = True) -> ABCCNN:
        """As ``nn.Module.train``, but a frozen backbone stays in eval mode (its batch-norm
        statistics are the pretrained ones)."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def features(self, images: Tensor) -> Tensor:
        """The reduced feature map ``[N, D, h, w]`` (with the coordinate channels)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            out = self.backbone(images)["out"]
        return self.encode(out)

    def encode(self, out: Tensor) -> Tensor:
        """The backbone's ``"out"`` map -> the reduced features with the coordinate channels
        (a frozen backbone's maps can be computed once and fed here)."""
        f = self.reduce(out)
        return torch.cat([f, _coordinates(f)], dim=1) if self.coordinates else f

    def _attention(self, f: Tensor, q: Tensor) -> Tensor:
        k = self.kernel_size
        kernels = KERNEL_ACTIVATIONS[self.kernel_activation](self.kernels(q))
        kernels = kernels.reshape(len(q), self.dim, k, k)
        # responses scaled by a learned gain, at first 1 / sqrt(D) (chosen): a softmax that
        # starts broad but not flat, and can sharpen
        return spatial_softmax(configurable_conv(f, kernels) * self.gain / math.sqrt(self.dim))

    def forward(self, images: Tensor, questions: Tensor) -> Tensor:
        return self.head(self.features(images), questions)

    def head(self, f: Tensor, questions: Tensor) -> Tensor:
        """Answer logits from the features (:meth:`features` or :meth:`encode`)."""
        q = self.question(questions)
        parts = [q, f.mean(dim=(2, 3))]
        if self.use_attention:
            attention = self._attention(f, q)
            parts.append(torch.einsum("ndhw,nhw->nd", f, attention))
        return self.classifier(torch.cat(parts, dim=1))

    def attention_maps(self, images: Tensor, questions: Tensor) -> Tensor:
        """The question-guided attention ``[N, h, w]`` (``h, w``: the features' size; each map
        sums to 1), for pictures and the attention IoU."""
        if not self.use_attention:
            raise ValueError("abc_cnn was built with use_attention=False: it has no attention")
        return self._attention(self.features(images), self.question(questions))


def abc_cnn(
    *,
    backbone: str = "mobilenetv2",
    vocab_size: int,
    num_answers: int,
    kernel_size: int = 3,
    output_stride: int = 8,
    width_mult: float = 1.0,
    channels: int = 64,
    embed_dim: int = 64,
    hidden: int = 128,
    fusion: int = 256,
    kernel_activation: str = "tanh",
    coordinates: bool = False,
    use_attention: bool = True,
    freeze_backbone: bool = False,
    backbone_weights: str | None = None,
) -> ABCCNN:
    """ABC-CNN on any atrous backbone's output-stride features (the paper: VGG-19 conv5, or a
    segmentation network's map; recalled, unverified). ``kernel_size``: the configurable
    kernels' ``k`` (the paper's value unread; 3 chosen). ``channels``: the 1x1 reduction of the
    features before the attention (chosen: 64 keeps the kernel projection, ``hidden x D k k``,
    small). ``embed_dim`` / ``hidden``: word embedding and LSTM sizes (chosen; the paper's
    unread). ``fusion``: the classifier's hidden layer (chosen). ``kernel_activation``: "tanh"
    (scaled, default) or "sigmoid" (both recalled, unverified). ``coordinates`` appends
    normalised ``x, y`` channels to the features (not the paper's, so off: the attended
    features would then say *where* the attended region is, but on the shape-QA benchmark
    they answer no better). ``use_attention=False`` drops the attention branch.
    ``freeze_backbone`` keeps the backbone as given (no gradients, batch-norm in eval mode):
    the paper's features are a pretrained network's; the demo pretrains them on segmentation."""
    if vocab_size < 2 or num_answers < 2:
        raise ValueError(
            f"abc_cnn needs a vocabulary (padding and words) and at least two answers, not "
            f"vocab_size={vocab_size}, num_answers={num_answers}"
        )
    net = _backbone(backbone, output_stride, width_mult, weights=backbone_weights)
    return ABCCNN(
        net, vocab_size=vocab_size, num_answers=num_answers, kernel_size=kernel_size,
        channels=channels, embed_dim=embed_dim, hidden=hidden, fusion=fusion,
        kernel_activation=kernel_activation, coordinates=coordinates,
        use_attention=use_attention, freeze_backbone=freeze_backbone,
    )  # fmt: skip
