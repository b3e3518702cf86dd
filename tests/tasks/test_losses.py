import pytest
import torch
from torch.nn import functional as F

from atrous.tasks.losses import mining_fraction, segmentation_loss


def test_plain_loss_equals_cross_entropy_with_ignore():
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, 0] = 255
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(segmentation_loss(logits, target), expected)


def test_top_k_keeps_exactly_the_k_hardest_pixels():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 5)
    target = torch.randint(0, 3, (1, 4, 5))
    target[0, 0, :2] = 255  # 18 valid pixels
    per_pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    valid = per_pixel[target != 255]
    hardest = valid.sort(descending=True).values[: round(0.25 * 18)]  # k = 4 (4.5 rounds to 4)
    loss = segmentation_loss(logits, target, top_k_percent=0.25)
    assert torch.allclose(loss, hardest.mean())
    # The gradient reaches only the kept pixels.
    logits.requires_grad_(True)
    segmentation_loss(logits, target, top_k_percent=0.25).backward()
    touched = (logits.grad.abs().sum(1)[0] > 0).sum().item()
    assert touched == len(hardest)


def test_class_weights_and_all_ignore():
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    loss = segmentation_loss(logits, target, class_weights=[1.0, 3.0])
    assert torch.allclose(loss, torch.tensor((1.0 + 3.0) / 2 * 0.6931), atol=1e-4)
    with pytest.raises(ValueError, match="3 class weights for 2 classes"):
        segmentation_loss(logits, target, class_weights=[1.0, 1.0, 1.0])
    empty = segmentation_loss(logits.requires_grad_(True), torch.full((1, 1, 2), 255))
    assert empty.item() == 0.0
    empty.backward()


def test_mining_fraction_ramps_linearly():
    assert mining_fraction(0, 0.2, 100) == 1.0
    assert mining_fraction(50, 0.2, 100) == pytest.approx(0.6)
    assert mining_fraction(100, 0.2, 100) == pytest.approx(0.2)
    assert mining_fraction(500, 0.2, 100) == pytest.approx(0.2)
    assert mining_fraction(0, 0.2, 0) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        mining_fraction(0, 0.0)


def test_auxiliary_outputs_add_weighted_losses():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    main, aux = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)  # aux at lower resolution
    up = F.interpolate(aux, size=(8, 8), mode="bilinear", align_corners=False)
    expected = F.cross_entropy(main, target) + 0.4 * F.cross_entropy(up, target)
    loss = segmentation_loss({"out": main, "scale_0.5": aux}, target, aux_weight=0.4)
    assert torch.allclose(loss, expected)
    with pytest.raises(ValueError, match="no 'out' logits"):
        segmentation_loss({"aux": main}, target)
