"""The sections of a recipe (``data``, ``model``, ``train``, ``refine``, ``weak``, ``panoptic``,
``search``) as dataclasses with the papers' defaults; :mod:`atrous.config` reads YAML into them."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, SCALE_STEP
from .models.spec import builder_parameters
from .models.wrappers.crf_as_rnn import CRFParams
from .models.wrappers.domain_transform import DEFAULT_SIGMA_R, DEFAULT_SIGMA_S
from .models.wrappers.domain_transform import ITERATIONS as DT_ITERATIONS
from .tasks.panoptic_targets import CENTER_WEIGHT as PANOPTIC_CENTER_WEIGHT
from .tasks.panoptic_targets import OFFSET_WEIGHT as PANOPTIC_OFFSET_WEIGHT
from .tasks.panoptic_targets import SIGMA as PANOPTIC_SIGMA
from .tasks.panoptic_targets import SMALL_AREA as PANOPTIC_SMALL_AREA
from .tasks.panoptic_targets import SMALL_WEIGHT as PANOPTIC_SMALL_WEIGHT


def _plain_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass
class DataConfig:
    """Where the data is and how it is augmented (defaults: DeepLab on PASCAL VOC)."""

    dataset: str = "folder"  # a name in atrous.data.DATASETS: folder, voc, cityscapes, ...
    root: str = ""
    train_split: str = "train"
    val_split: str | None = "val"
    num_classes: int | None = None  # folder only; None: from the folder's classes.json
    # folder without a val.txt: hold out this share of the images as val (by a hash of the
    # file name, so the split is the same every run)
    val_fraction: float = 0.1
    # Weak / semi-supervised training (Papandreou et al., ICCV 2015): full (masks), boxes,
    # image_labels, or mixed (strong_fraction of the images keep masks, the rest boxes if given
    # else image labels). boxes: a JSON or a VOC Annotations folder; image_labels: a JSON.
    supervision: str = "full"
    boxes: str | None = None
    image_labels: str | None = None
    strong_fraction: float = 0.1
    crop_size: int = 513
    scale_range: tuple[float, float] = (0.5, 2.0)
    scale_step: float = SCALE_STEP  # 0: continuous (atrous.data.transforms.SCALE_STEP)
    hflip: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_workers: int = 2


@dataclass(init=False)
class ModelConfig:
    """A builder from :data:`atrous.models.MODELS`, its keyword arguments and the wrappers
    around it. In a recipe every key of ``model:`` but ``name`` and the wrapper switches is a
    keyword argument of the builder (``backbone``, ``output_stride``, ``extra_blocks``, ...),
    checked against its signature and type hints; options left out keep the builder's
    defaults. ``ModelConfig(name="deeplabv3", backbone="resnet50")`` and
    ``cfg.model.backbone`` read the same way."""

    name: str = "deeplabv3plus"
    # DT-EdgeNet (Chen et al., CVPR 2016): an EdgeNet on the backbone features guides a domain
    # transform on the logits, trained end to end; its sigmas are refine.domain_transform's.
    domain_transform: bool = False
    # CRF-as-RNN (Zheng et al., 2015): a learnable dense CRF layer on the logits, trained end
    # to end; its kernel widths and starting weights are refine.crf's.
    dense_crf: bool = False
    # Attention to scale (Chen et al., CVPR 2016) / v2 MSC: null (off), true (the paper's
    # scales 1, 0.75, 0.5 merged by attention) or {scales: [...], merge: attention|max|avg}.
    scale_attention: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the builder's keyword arguments
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __init__(
        self,
        name: str = "deeplabv3plus",
        domain_transform: bool = False,
        dense_crf: bool = False,
        scale_attention: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        sources: dict[str, str] | None = None,
        **builder_options: Any,
    ) -> None:
        self.name, self.domain_transform, self.dense_crf = name, domain_transform, dense_crf
        self.scale_attention = scale_attention
        self.options = {**(options or {}), **builder_options}
        self.sources = dict(sources or {})

    def __getattr__(self, key: str) -> Any:
        """A builder option: the recipe's value, else the builder's default."""
        if key.startswith("_") or key in ("name", "options", "sources", "scale_attention"):
            raise AttributeError(key)
        if key in self.options:
            return self.options[key]
        parameter = builder_parameters(self.name).get(key)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            raise AttributeError(f"builder {self.name!r} has no option {key!r}")
        return parameter.default

    def builder_kwargs(self) -> dict[str, Any]:
        """The builder's keyword arguments the recipe sets (the rest keep their defaults)."""
        return dict(self.options)

    def resolved(self) -> dict[str, Any]:
        """Every builder option: the recipe's values over the builder's defaults."""
        defaults = {
            k: p.default
            for k, p in builder_parameters(self.name).items()
            if p.default is not inspect.Parameter.empty and k != "num_classes"
        }
        return {**defaults, **{k: _plain_tuple(v) for k, v in self.options.items()}}

    def __eq__(self, other: object) -> bool:
        """Equal when they build the same model (an option at its default = left out)."""
        if not isinstance(other, ModelConfig):
            return NotImplemented
        same = (self.name, self.domain_transform, self.dense_crf, self.scale_attention)
        if same != (other.name, other.domain_transform, other.dense_crf, other.scale_attention):
            return False
        return self.resolved() == other.resolved()


# What ModelConfig's fields were before recipes took any builder option: checkpoints of that
# time store all of them, also for builders that do not take some (at these values).
_LEGACY_MODEL_DEFAULTS: dict[str, Any] = {
    "backbone": "mobilenetv2",
    "output_stride": 16,
    "width_mult": 1.0,
    "channels": 256,
    "atrous_rates": (6, 12, 18),
    "multi_grid": None,
    "backbone_weights": None,
}


@dataclass
class TrainConfig:
    """The solver (TF DeepLab reference defaults: SGD 0.9, poly 0.9, LR 0.007, batch 8)."""

    steps: int = 30000
    optimizer: str = "sgd"  # "sgd" (DeepLab) or "adam" (Panoptic-DeepLab; momentum unused)
    batch_size: int = 8  # per process: under torchrun the global batch is this x world size
    lr: float = 0.007
    momentum: float = 0.9
    weight_decay: float = 4e-5  # MobileNetV2 / Xception; 1e-4 for ResNet
    poly_power: float = 0.9
    warmup_steps: int = 0  # linear LR warm-up before the poly decay
    head_lr_mult: float = 1.0  # LR multiplier for everything but the backbone
    top_k_percent: float = 1.0  # hard-pixel mining: keep this share of the hardest pixels
    hard_mining_steps: int = 0  # ramp from all pixels down to top_k_percent over these steps
    class_weights: tuple[float, ...] | None = None
    aux_weight: float = 1.0  # weight of auxiliary outputs' losses (models returning a dict)
    freeze_bn: bool = False  # BN uses and keeps its running statistics (small batches)
    bn_momentum: float | None = None  # torch momentum; TF decay 0.9997 = 0.0003
    # at the end, BN's running statistics become the plain average over this many training
    # batches under the final weights (precise BN; 0: keep the running averages)
    precise_bn: int = 0
    accumulate: int = 1  # micro-batches per optimizer step (effective batch = batch x this)
    clip_grad_norm: float | None = None
    checkpoint_every: int = 1000
    log_every: int = 1  # steps between train_log.jsonl / TensorBoard entries
    # weak supervision: at every checkpoint, write the E-step estimates of this many training
    # images as palette PNGs to out_dir/estimates/step_<k>/ (what the network learns from)
    save_estimates: int = 0
    # mixed precision: "auto" (bf16 where the CPU/GPU runs it natively, else fp32; fp16 on
    # CUDA without bf16), "none", "bf16" (CPU or CUDA) or "fp16" (CUDA only)
    amp: str = "auto"
    channels_last: bool = True  # NHWC memory layout for the model and its inputs
    # torch.compile the training step's forward (off: on this CPU it did not pay for itself,
    # benchmarks/results/compile_speed.md)
    compile: bool = False
    seed: int = 0
    device: str = "auto"  # "auto": cuda when available, else cpu
    out_dir: str = "runs/atrous"
    # false: a new run (refused where out_dir already holds another run's checkpoint); true:
    # continue out_dir/checkpoint.pt (`atrous train --resume`); "auto": continue it when it
    # exists, else start (preempted jobs, torchrun --max-restarts)
    resume: bool | str = False
    # validation while training: every eval_every steps (0: only at the end) the val split is
    # scored with the task's evaluator; best.pt keeps the weights with the best best_metric
    # (default: the task's main metric, e.g. miou, panoptic.pq); early_stop: stop after this
    # many evaluations without a gain (0: never)
    eval_every: int = 0
    best_metric: str | None = None
    early_stop: int = 0
    # where the run is logged besides train_log.jsonl (always written): tensorboard (when
    # installed), mlflow (atrous[mlflow]; out_dir/mlruns unless MLFLOW_TRACKING_URI), wandb
    # (atrous[wandb]; WANDB_MODE=offline keeps it on disk)
    loggers: tuple[str, ...] = ("jsonl", "tensorboard")


@dataclass
class CRFConfig(CRFParams):
    """Dense CRF parameters (DeepLab v2's released values) for ``eval/predict --crf`` and the
    CRF-as-RNN layer (``model.dense_crf``), and the backend post-hoc refinement runs on."""

    backend: str = "auto"  # "reference" (pydensecrf2, CPU), "torch" (ours), "auto"

    def params(self) -> CRFParams:
        return CRFParams(**{k: v for k, v in dataclasses.asdict(self).items() if k != "backend"})


@dataclass
class DomainTransformConfig:
    """Domain transform parameters: ``eval/predict --domain-transform`` (image-gradient edges)
    and the DT-EdgeNet model (``model.domain_transform``)."""

    sigma_s: float = DEFAULT_SIGMA_S
    sigma_r: float = DEFAULT_SIGMA_R
    iterations: int = DT_ITERATIONS


@dataclass
class RefineConfig:
    crf: CRFConfig = field(default_factory=CRFConfig)
    domain_transform: DomainTransformConfig = field(default_factory=DomainTransformConfig)


@dataclass
class WeakConfig:
    """How weak labels train (``data.supervision`` other than full): ``rect`` / ``seg`` (boxes
    to fixed labels: Bbox-Rect, Bbox-Seg) or ``em_fixed`` / ``em_adapt`` (the E-step on the
    network's scores at every step); defaults are the released Caffe layers'."""

    method: str = "em_fixed"
    bg_bias: float = 1.0  # EM-Fixed (Caffe BiasChannel defaults)
    fg_bias: float = 2.0
    bg_portion: float = 0.2  # EM-Adapt (Caffe AdaptiveBiasChannel defaults)
    fg_portion: float = 0.2
    suppress_others: bool = True
    margin: float = 1e-5
    iterations: int = 1
    strong_repeat: int = 1  # mixed: draw each strong image this many times per epoch


@dataclass
class PanopticConfig:
    """Panoptic-DeepLab's targets, losses and post-processing (``task: panoptic``). Defaults are
    the paper's for Cityscapes-size images (Cheng et al., CVPR 2020, Sec. 3-4; the deeplab2 /
    detectron2 values); smaller images and objects want smaller ones (the demo's, measured in
    benchmarks/results/panoptic_demo.md)."""

    sigma: float = PANOPTIC_SIGMA  # centre heatmap Gaussian, pixels
    small_area: int = PANOPTIC_SMALL_AREA  # instances under this many pixels ...
    small_weight: float = PANOPTIC_SMALL_WEIGHT  # ... weigh this much in the semantic loss
    center_weight: float = PANOPTIC_CENTER_WEIGHT  # x the centre MSE
    offset_weight: float = PANOPTIC_OFFSET_WEIGHT  # x the offset L1 (pixels)
    threshold: float = 0.1  # post-processing: centre score threshold
    nms_kernel: int = 7  # centre NMS window (odd)
    top_k: int = 200  # at most this many centres per image
    stuff_area: int = 2048  # stuff regions under this many pixels become void


@dataclass
class SearchConfig:
    """Auto-DeepLab's search (``atrous search``); defaults are the paper's (Sec. 3.3): 12 layers,
    F = 8, weights by SGD with cosine LR 0.025 -> 0.001 and weight decay 3e-4, alpha/beta by Adam
    (LR 3e-3, weight decay 1e-3) only after the first half (epoch 20 of 40), batch 2."""

    layers: int = 12
    filters: int = 8
    steps: int = 1000  # weight updates; alpha/beta updates run beside them after arch_start
    arch_start: float = 0.5  # share of the steps before alpha/beta start to move
    batch_size: int = 2
    lr: float = 0.025
    min_lr: float = 0.001
    weight_decay: float = 3e-4
    arch_lr: float = 3e-3
    arch_weight_decay: float = 1e-3
    seed: int = 0


@dataclass
class Config:
    # the kind of training (a name in atrous.tasks.TASKS: semantic, weak, panoptic). Left out,
    # semantic, or for recipes written before this key what they train: weak for a
    # data.supervision other than full, panoptic for model.name panoptic_deeplab
    task: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    weak: WeakConfig = field(default_factory=WeakConfig)
    panoptic: PanopticConfig = field(default_factory=PanopticConfig)
