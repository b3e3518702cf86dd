"""Output stride -> (stride, dilation) per unit: the one place where strides become atrous rates."""

from __future__ import annotations

from collections.abc import Sequence

OUTPUT_STRIDES = (8, 16, 32)


def check_output_stride(output_stride: int) -> None:
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")


def stride_plan(strides: Sequence[int], output_stride: int) -> list[tuple[int, int]]:
    """Per unit, from its nominal stride: the (stride, dilation) to stop at ``output_stride``.

    Once the running stride reaches ``output_stride``, a unit's stride turns into a doubled
    atrous rate for the units after it; the unit itself keeps the rate it had. This is the TF
    DeepLab reference's rule (``mobilenet.py`` / ``resnet_utils.stack_blocks_dense``), and
    torchvision's ``replace_stride_with_dilation``.
    """
    check_output_stride(output_stride)
    current, rate, plan = 1, 1, []
    for stride in strides:
        if current >= output_stride:
            plan.append((1, rate))
            rate *= stride
        else:
            plan.append((stride, 1))
            current *= stride
    return plan
