"""intsim.input_checks: notices reach a list when the caller collects them (the CLI prints them once
the command succeeded), else the ``intsim.input_checks`` logger."""
from __future__ import annotations

import logging

import numpy as np

from intsim.images import LoadedImage
from intsim.input_checks import check_sizes, tile_plan
from tests.artifact_factory import make_random_artifact


def _image(h, w):
    return LoadedImage("small.png", "small", np.zeros((h, w, 3), np.uint8), None)


def test_small_image_notice_to_a_list_or_the_logger(caplog):
    art, im = make_random_artifact(0), _image(6, 6)
    notices = []
    with caplog.at_level(logging.INFO, logger="intsim"):
        check_sizes(art, [im], notices)
    assert len(notices) == 1 and "receptive field" in notices[0] and not caplog.records
    with caplog.at_level(logging.INFO, logger="intsim"):
        check_sizes(art, [im])
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == \
        [("intsim.input_checks", logging.INFO, notices[0])]


def test_tiling_notice_to_a_list_or_the_logger(caplog):
    art, im = make_random_artifact(0), _image(64, 64)
    from intsim.footprint import untiled_peak_bytes

    budget = untiled_peak_bytes(art, 64, 64) - 1  # just too little for an untiled run
    notices = []
    rows = tile_plan(art, im, budget, notices)
    assert rows is not None and len(notices) == 1 and "bands of" in notices[0]
    with caplog.at_level(logging.INFO, logger="intsim"):
        assert tile_plan(art, im, budget) == rows
    assert [r.getMessage() for r in caplog.records if r.name == "intsim.input_checks"] == notices
