import numpy as np

from atrous.data import colorize, overlay, voc_colormap


def test_voc_colormap_known_entries():
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    # From the VOC devkit: background, aeroplane, bicycle, bird, person, tvmonitor, void.
    expected = {
        0: (0, 0, 0),
        1: (128, 0, 0),
        2: (0, 128, 0),
        3: (128, 128, 0),
        15: (192, 128, 128),
        20: (0, 64, 128),
        255: (224, 224, 192),
    }
    for index, colour in expected.items():
        assert tuple(cmap[index]) == colour


def test_colorize_and_overlay():
    mask = np.array([[0, 1], [2, 255]])
    colours = colorize(mask)
    assert colours.shape == (2, 2, 3)
    assert tuple(colours[0, 1]) == (128, 0, 0)
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    blended = overlay(image, mask, alpha=0.5)
    assert tuple(blended[0, 0]) == (100, 100, 100)  # background left as is
    assert tuple(blended[0, 1]) == (114, 50, 50)  # (100 + 128) / 2, 100 / 2
