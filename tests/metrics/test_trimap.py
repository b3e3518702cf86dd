import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from atrous.metrics import ConfusionMatrix, TrimapIoU, boundary_pixels, trimap_band


def _square(size: int = 20, lo: int = 5, hi: int = 15, label: int = 1) -> torch.Tensor:
    t = torch.zeros(size, size, dtype=torch.long)
    t[lo:hi, lo:hi] = label
    return t


def _grid(rows: str) -> torch.Tensor:
    return torch.tensor([[c == "#" for c in row] for row in rows.split()])


# 10x10 object at rows/cols 5..14 of a 20x20 background. Width 1 is the boundary itself: the
# object's outer ring plus the background pixels 4-adjacent to it (hence no outer corners).
SQUARE_W1 = _grid(
    """
    ....................
    ....................
    ....................
    ....................
    .....##########.....
    ....############....
    ....##........##....
    ....##........##....
    ....##........##....
    ....##........##....
    ....##........##....
    ....##........##....
    ....##........##....
    ....##........##....
    ....############....
    .....##########.....
    ....................
    ....................
    ....................
    ....................
    """
)

# Width 2 adds every pixel at chessboard distance 1 from the boundary; the four outer corners
# (e.g. row 3, col 3) are at distance 2 and stay out.
SQUARE_W2 = _grid(
    """
    ....................
    ....................
    ....................
    ....############....
    ...##############...
    ...##############...
    ...##############...
    ...####......####...
    ...####......####...
    ...####......####...
    ...####......####...
    ...####......####...
    ...####......####...
    ...##############...
    ...##############...
    ...##############...
    ....############....
    ....................
    ....................
    ....................
    """
)


def test_hand_made_square_band():
    t = _square()
    assert torch.equal(boundary_pixels(t), SQUARE_W1)
    assert torch.equal(trimap_band(t, 1), SQUARE_W1)
    assert int(SQUARE_W1.sum()) == 36 + 40  # inner ring + 4 outer sides


def test_hand_made_square_band_width_2():
    assert torch.equal(trimap_band(_square(), 2), SQUARE_W2)


def test_void_outline_is_the_boundary():
    # VOC-style: the object (class 3) is separated from the background by a 1-px void outline.
    t = torch.zeros(9, 9, dtype=torch.long)
    t[2:7, 2:7] = 255
    t[3:6, 3:6] = 3
    expected = _grid(
        """
        .........
        ..#####..
        .#.....#.
        .#.###.#.
        .#.#.#.#.
        .#.###.#.
        .#.....#.
        ..#####..
        .........
        """
    )
    assert torch.equal(trimap_band(t, 1), expected)
    # Skipping void neighbours instead, 0 and 3 never touch: there is no boundary at all.
    assert not trimap_band(t, 1, void_as_boundary=False).any()
    # A direct label change next to void is still a boundary in both modes.
    t2 = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 255]])
    assert torch.equal(trimap_band(t2, 1, void_as_boundary=False), _grid(".##. .##."))
    # (0, 3) touches the void pixel below it; the void pixel itself is never in the band.
    assert torch.equal(trimap_band(t2, 1), _grid(".### .##."))


def _random_labels(seed: int, shape=(3, 23, 31), num_classes: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Blocky labels (upsampled noise) so bands have room to grow, plus scattered void pixels.
    coarse = torch.randint(0, num_classes, (shape[0], 1, 4, 5), generator=g).float()
    t = torch.nn.functional.interpolate(coarse, size=shape[1:], mode="nearest")[:, 0].long()
    t[torch.rand(shape, generator=g) < 0.05] = 255
    return t


@pytest.mark.parametrize("void_as_boundary", [True, False])
def test_matches_scipy_chessboard_distance_and_is_monotone(void_as_boundary):
    t = _random_labels(0)
    prev = torch.zeros_like(t, dtype=torch.bool)
    for w in (1, 2, 3, 5, 8, 40):
        band = trimap_band(t, w, void_as_boundary=void_as_boundary)
        assert band.shape == t.shape and band.dtype == torch.bool
        assert not band[t == 255].any()  # void pixels are never in the band
        assert not (prev & ~band).any()  # band(w) is a subset of band(w') for w < w'
        prev = band
        for i in range(t.shape[0]):
            edge = boundary_pixels(t[i], void_as_boundary=void_as_boundary).numpy()
            assert edge.any()
            dist = ndimage.distance_transform_cdt(~edge, metric="chessboard")
            expected = (dist < w) & (t[i].numpy() != 255)
            assert np.array_equal(band[i].numpy(), expected)
            assert torch.equal(trimap_band(t[i], w, void_as_boundary=void_as_boundary), band[i])


def test_perfect_inside_band_scores_one_and_far_errors_do_not_count():
    t = _square(size=30, lo=8, hi=22)
    w = 3
    band = trimap_band(t, w)
    pred = torch.where(band, t, 1 - t)  # right inside the band, wrong everywhere else
    m = TrimapIoU(2, widths=[1, 2, 3, 4, 10])
    m.update(pred, t)
    r = m.compute()
    for width in (1, 2, 3):
        assert r["miou"][width] == 1.0
        assert r["iou"][width] == [1.0, 1.0]
    assert r["miou"][4] < 1.0 and r["miou"][10] < r["miou"][4]

    # Changing the prediction only outside band(3) leaves widths <= 3 untouched.
    other = pred.clone()
    other[~band] = t[~band]
    m2 = TrimapIoU(2, widths=[1, 2, 3, 4, 10])
    m2.update(other, t)
    r2 = m2.compute()
    for width in (1, 2, 3):
        assert r2["miou"][width] == r["miou"][width]
        assert r2["num_pixels"][width] == r["num_pixels"][width] == int(trimap_band(t, width).sum())
    assert r2["miou"][10] == 1.0


def test_merge_equals_sequential_update_and_batches_equal_singles():
    t1, t2 = _random_labels(1), _random_labels(2, shape=(2, 17, 12))
    g = torch.Generator().manual_seed(3)
    p1 = torch.randint(0, 4, t1.shape, generator=g)
    p2 = torch.randint(0, 4, t2.shape, generator=g)
    a, b, seq, singles = (TrimapIoU(4, widths=range(1, 8)) for _ in range(4))
    a.update(p1, t1)
    b.update(p2, t2)
    seq.update(p1, t1)
    seq.update(p2, t2)
    for p, t in ((p1, t1), (p2, t2)):
        for i in range(t.shape[0]):
            singles.update(p[i], t[i])
    merged = a.merge(b)
    for w in seq.widths:
        assert torch.equal(merged.matrices[w].matrix, seq.matrices[w].matrix)
        assert torch.equal(singles.matrices[w].matrix, seq.matrices[w].matrix)
    seq.reset()
    assert all(int(cm.matrix.sum()) == 0 for cm in seq.matrices.values())


def test_large_width_reaches_full_image_miou():
    t = _random_labels(4, shape=(2, 15, 13))
    p = torch.randint(0, 4, t.shape, generator=torch.Generator().manual_seed(5))
    full = ConfusionMatrix(4)
    full.update(p, t)
    m = TrimapIoU(4)  # default widths 1..40, DeepLab v2 Fig. 5
    m.update(p, t)
    r = m.compute()
    assert r["widths"] == list(range(1, 41))
    counts = [r["num_pixels"][w] for w in r["widths"]]
    assert counts == sorted(counts) and counts[0] > 0
    assert r["num_pixels"][40] == int((t != 255).sum())
    assert r["miou"][40] == pytest.approx(full.compute()["miou"])
    assert r["iou"][40] == pytest.approx(full.compute()["iou"], nan_ok=True)


def test_uniform_image_has_empty_band_and_nan_miou():
    t = torch.ones(6, 6, dtype=torch.long)
    assert not trimap_band(t, 40).any()
    m = TrimapIoU(2, widths=[1, 5])
    m.update(t, t)
    assert math.isnan(m.compute()["miou"][5])


def test_bad_inputs():
    with pytest.raises(ValueError, match="width"):
        trimap_band(_square(), 0)
    with pytest.raises(ValueError, match="widths"):
        TrimapIoU(2, widths=[0, 3])
    with pytest.raises(ValueError, match=r"\[H,W\] or \[N,H,W\]"):
        trimap_band(torch.zeros(1, 1, 4, 4, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="class ids"):
        trimap_band(torch.zeros(4, 4), 1)
    m = TrimapIoU(2, widths=[1, 2])
    with pytest.raises(ValueError, match="shape"):
        m.update(torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target holds class ids \[7\]"):
        m.update(torch.zeros(4, 4, dtype=torch.long), _square(4, 1, 3, label=7))
    with pytest.raises(ValueError, match="cannot merge"):
        m.merge(TrimapIoU(2, widths=[1, 3]))


def test_counts_equal_confusion_matrix_on_masked_target():
    t = _random_labels(6)
    p = torch.randint(0, 4, t.shape, generator=torch.Generator().manual_seed(7))
    m = TrimapIoU(4, widths=[1, 3, 4, 9, 40])
    m.update(p, t)
    for w in m.widths:
        ref = ConfusionMatrix(4)
        ref.update(p, t.masked_fill(~trimap_band(t, w), 255))
        assert torch.equal(m.matrices[w].matrix, ref.matrix)
