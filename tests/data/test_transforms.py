import pytest
import torch
from torchvision import tv_tensors

from atrous.data import IGNORE_INDEX, eval_transforms, train_transforms
from atrous.data.transforms import PadToSize, RandomScale

# Label colours at the corners of the RGB cube: a bilinear blend of two or more of them never
# equals one of them, so a pixel whose colour is exactly a label colour is an unblended pixel.
COLOURS = torch.tensor([[255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]])


def _pattern(h: int = 60, w: int = 72) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """An asymmetric pattern of 12x14 blocks with 4 labels; image colour encodes the label."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    mask = (yy // 12 + 2 * (xx // 14) + (xx > w // 3) * (yy > h // 2)) % 4
    image = COLOURS[mask].permute(2, 0, 1).to(torch.uint8)
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


@pytest.mark.parametrize("seed", range(12))
def test_train_transforms_keep_image_and_mask_aligned(seed):
    image, mask = _pattern()
    # mean 0 / std 1: the output image is the uint8 image / 255, padded with black.
    transform = train_transforms(48, mean=(0, 0, 0), std=(1, 1, 1))
    torch.manual_seed(seed)
    out_image, out_mask = transform(image, mask)
    assert isinstance(out_mask, tv_tensors.Mask) and out_mask.dtype == torch.int64
    assert out_image.shape == (3, 48, 48) and out_mask.shape == (48, 48)
    pixels = (out_image * 255).round().long().permute(1, 2, 0)  # HxWx3
    padded = (pixels == 0).all(-1)
    assert torch.equal(padded, out_mask == IGNORE_INDEX)
    checked = 0
    for label, colour in enumerate(COLOURS):
        pure = (pixels == colour).all(-1)
        assert torch.all(out_mask[pure] == label)
        checked += int(pure.sum())
    assert checked > 0.2 * (~padded).sum()  # a good share of pixels is checked


def test_random_scale_factors_and_nearest_mask():
    image, mask = _pattern(40, 52)
    sizes = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out_image, out_mask = RandomScale(0.5, 2.0, 0.25)(image, mask)
        assert out_image.shape[-2:] == out_mask.shape
        assert set(out_mask.unique().tolist()) <= {0, 1, 2, 3}  # nearest: no new labels
        sizes.add(tuple(out_mask.shape))
    expected = {(round(40 * s), round(52 * s)) for s in (0.5, 0.75, 1, 1.25, 1.5, 1.75, 2)}
    assert sizes == expected


def test_pad_to_size_pads_bottom_right_with_fill():
    image, mask = _pattern(10, 12)
    out_image, out_mask = PadToSize(
        16, fill={tv_tensors.Image: [1, 2, 3], tv_tensors.Mask: IGNORE_INDEX}
    )(image, mask)
    assert out_mask.shape == (16, 16)
    assert torch.equal(out_mask[:10, :12], mask)
    assert (out_mask[10:] == IGNORE_INDEX).all() and (out_mask[:, 12:] == IGNORE_INDEX).all()
    assert out_image[:, 12, 15].tolist() == [1, 2, 3]


def test_eval_transforms_normalize_only():
    image, mask = _pattern()
    out_image, out_mask = eval_transforms(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(image, mask)
    assert torch.equal(out_mask, mask)
    assert out_image.dtype == torch.float32
    assert torch.allclose(out_image, image.float() / 127.5 - 1)
