"""The one type every layer of the forward stack shares."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

Forward = Callable[[Tensor], Tensor]
"""A normalized ``[N, 3, H, W]`` batch -> ``[N, K, H, W]`` scores: a model, or a closure over one
(sliding window, multi-scale)."""
