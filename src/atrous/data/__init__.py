"""Files -> (tv_tensors.Image, tv_tensors.Mask)."""

from ._pairs import (
    IMAGE_SUFFIXES,
    PairedDataset,
    check_labels,
    image_size,
    map_labels,
    open_image,
    read_image,
    read_json,
    read_mask,
)
from .ade20k import ADE20K_INFO, ADE20KSegmentation
from .build import DATASETS, build_dataset
from .cityscapes import CITYSCAPES_INFO, CityscapesSegmentation
from .context import PascalContextSegmentation
from .folder import SegmentationFolder
from .info import IGNORE_INDEX, DatasetInfo
from .instances import COCOInstances, InstanceTrainTransforms, instance_hflip, instance_semantic
from .keypoints import COCOKeypoints
from .mirflickr import MIRFLICKR_TAGS, MIRFlickr, make_synthetic_tags
from .palette import colorize, overlay, voc_colormap
from .panoptic import PanopticFolder
from .person_part import (
    PART_CLASSES,
    PART_GROUPS,
    SIZE_BUCKETS,
    PascalPartSegmentation,
    PersonPartPNG,
    object_size_buckets,
    object_sizes,
    size_bucket,
)
from .synthetic import make_synthetic_dataset
from .synthetic_instances import make_synthetic_instances
from .synthetic_parts import make_synthetic_parts
from .synthetic_people import make_synthetic_people
from .synthetic_qa import ShapeQA, make_shape_qa
from .transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms, train_transforms
from .voc import VOC_INFO, VOCSegmentation
from .vqa import COCOQA, DAQUAR, VQAJSON, question_type
from .words import make_noisy_words, ocr_words, read_ocr_letters

__all__ = [
    "COCOQA",
    "DAQUAR",
    "ShapeQA",
    "VQAJSON",
    "make_shape_qa",
    "question_type",
    "ADE20K_INFO",
    "ADE20KSegmentation",
    "PascalContextSegmentation",
    "PascalPartSegmentation",
    "PersonPartPNG",
    "CITYSCAPES_INFO",
    "VOC_INFO",
    "CityscapesSegmentation",
    "COCOInstances",
    "COCOKeypoints",
    "MIRFLICKR_TAGS",
    "MIRFlickr",
    "make_noisy_words",
    "make_synthetic_tags",
    "ocr_words",
    "read_ocr_letters",
    "VOCSegmentation",
    "DATASETS",
    "build_dataset",
    "IMAGE_SUFFIXES",
    "PairedDataset",
    "check_labels",
    "map_labels",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DatasetInfo",
    "InstanceTrainTransforms",
    "PanopticFolder",
    "PART_CLASSES",
    "PART_GROUPS",
    "SIZE_BUCKETS",
    "SegmentationFolder",
    "colorize",
    "eval_transforms",
    "instance_hflip",
    "instance_semantic",
    "make_synthetic_dataset",
    "make_synthetic_instances",
    "make_synthetic_parts",
    "make_synthetic_people",
    "image_size",
    "object_size_buckets",
    "object_sizes",
    "open_image",
    "overlay",
    "read_json",
    "read_image",
    "read_mask",
    "size_bucket",
    "train_transforms",
    "voc_colormap",
]
