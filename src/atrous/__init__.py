"""atrous: the DeepLab family of semantic segmentation systems on PyTorch."""

from .inference import Predictor

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__"]
