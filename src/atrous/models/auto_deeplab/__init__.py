"""Auto-DeepLab (Liu et al., CVPR 2019): the searched network (:mod:`.network`) and the search
space it is found in, the supernet with its decoding (:mod:`.search`)."""

from .network import FOUND, AutoDeepLabNetwork, auto_deeplab, load_architecture

__all__ = ["FOUND", "AutoDeepLabNetwork", "auto_deeplab", "load_architecture"]
