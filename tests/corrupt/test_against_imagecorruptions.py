"""Brightness, saturate and contrast against the installed imagecorruptions package itself (issue 28: "brightness
and saturate within one grey level of imagecorruptions for the same image and severity"; the RAVAR authors use its
tables for these two), not only against transcriptions of its lines (tests/corrupt/test_photometric.py)."""
from __future__ import annotations

import numpy as np
import pytest

from peers import imagecorruptions
from refava.corrupt import corrupt_clip
from refava.corrupt.photometric import contrast


def images():
    rng = np.random.default_rng(28)
    noise = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:72, 0:96]
    smooth = np.stack([xx * 255 // 95, yy * 255 // 71, (xx + yy) * 255 // 166], -1).astype(np.uint8)
    greys = np.repeat(np.linspace(0, 255, 40 * 40).reshape(40, 40, 1), 3, -1).astype(np.uint8)     # no hue
    corners = np.array(np.meshgrid(*[[0, 1, 127, 128, 254, 255]] * 3, indexing="ij")).reshape(3, -1).T
    cube = np.resize(corners, (36 * 36, 3)).reshape(36, 36, 3).astype(np.uint8)                    # extremes
    return {"noise": noise, "smooth": smooth, "greys": greys, "cube": cube}


@pytest.mark.parametrize("kind", ["brightness", "saturate"])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_within_one_grey_level_of_imagecorruptions(kind, severity):
    peer = getattr(imagecorruptions(), kind)
    for name, image in images().items():
        theirs = peer(image, severity)                               # float in [0, 255], before its uint8 cast
        ours = corrupt_clip(image[None], kind, severity, np.random.default_rng(0))[0]
        assert np.abs(ours.astype(float) - theirs).max() <= 1.0, (kind, severity, name)
        # and their uint8 result (imagecorruptions.corrupt truncates) is within one level too
        assert np.abs(ours.astype(int) - np.uint8(theirs).astype(int)).max() <= 1, (kind, severity, name)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_contrast_is_imagecorruptions_formula_with_its_own_table(severity):
    """refava runs the authors' table (0.5 .. 0.1); imagecorruptions' own (0.4 .. 0.05) through refava's function
    equals imagecorruptions, so the formula is theirs."""
    c = [0.4, .3, .2, .1, .05][severity - 1]
    for name, image in images().items():
        theirs = imagecorruptions().contrast(image, severity)
        ours = contrast(np.ascontiguousarray(image), c)
        assert np.abs(ours.astype(float) - theirs).max() <= 1.0, (severity, name)
