"""atrous: the DeepLab family of semantic segmentation systems on PyTorch."""
