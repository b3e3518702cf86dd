import pytest
import torch
from torch import nn

from atrous.inference import sliding_window, window_starts


def pixelwise() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()


def test_window_starts_cover_the_axis_and_end_flush():
    assert window_starts(25, 8, 5) == [0, 5, 10, 15, 17]
    assert window_starts(23, 8, 5) == [0, 5, 10, 15]
    assert window_starts(8, 8, 5) == [0]
    assert window_starts(10, 8, 8) == [0, 2]


@torch.no_grad()
@pytest.mark.parametrize(
    ("size", "crop", "stride"),
    [((30, 41), 16, None), ((30, 41), (12, 20), (7, 9)), ((9, 41), 16, 5), ((5, 7), 16, None)],
)
def test_pixelwise_model_gives_the_whole_image_answer(size, crop, stride):
    # Per-pixel model: window borders and the zero padding cannot change any pixel, so the
    # stitched result equals whole-image inference up to float rounding (atol 1e-6).
    model, x = pixelwise(), torch.randn(2, 3, *size)
    expected = model(x)
    got = sliding_window(model, x, crop, stride)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    probs = sliding_window(model, x, crop, stride, softmax=True)
    torch.testing.assert_close(probs, expected.softmax(1), atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_padding_to_the_crop_matches_conv_zero_padding():
    # One 3x3 conv with zero padding: padding bottom/right with 0 (the mean pixel) changes
    # nothing inside the image, so a padded single window is exact.
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, padding=1).eval()
    x = torch.randn(1, 3, 11, 13)
    torch.testing.assert_close(sliding_window(conv, x, 16), conv(x))


def test_windows_at_the_right_offsets_and_padded_with_zeros():
    x = torch.randn(1, 3, 10, 25)
    seen = []

    def forward(window):
        seen.append(window.clone())
        return window[:, :2]

    out = sliding_window(forward, x, 8, 5)
    starts = [(t, left) for t in (0, 2) for left in (0, 5, 10, 15, 17)]
    assert len(seen) == len(starts)
    for window, (top, left) in zip(seen, starts, strict=True):
        torch.testing.assert_close(window, x[..., top : top + 8, left : left + 8])
    torch.testing.assert_close(out, x[:, :2])

    seen.clear()
    small = torch.randn(1, 3, 5, 20)
    sliding_window(forward, small, (8, 10), (8, 10))
    assert [tuple(w.shape[-2:]) for w in seen] == [(8, 10), (8, 10)]
    torch.testing.assert_close(seen[1][..., :5, :], small[..., 10:20])
    assert (seen[0][..., 5:, :] == 0).all()


def test_bad_crop_and_stride():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="crop"):
        sliding_window(pixelwise(), x, 0)
    with pytest.raises(ValueError, match="gaps"):
        sliding_window(pixelwise(), x, 4, 5)
