"""Weights from elsewhere into atrous models: torchvision (:mod:`.torchvision`), timm
(:mod:`.timm`), TF DeepLab checkpoints (:mod:`.tf`), the ImageNet backbone weights the builders
fetch (:mod:`.weights`) and the registry of published models (:mod:`.registry`).

This file imports nothing: :mod:`.weights` and :mod:`.timm` sit below the builders (which use
them), the others above (they build models), so each is imported from its own module; the
public names are re-exported by :mod:`atrous.models`.
"""
