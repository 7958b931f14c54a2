"""scripts/region_descriptions.py: VG-style descriptions name only what the scene shows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from training.world.language import FILL_SYNONYMS, SHAPE_SYNONYMS, SIZE_SYNONYMS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "region_descriptions.py"
spec = importlib.util.spec_from_file_location("region_descriptions", SCRIPT)
region_descriptions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(region_descriptions)


def test_descriptions_name_a_visible_object_and_only_its_attributes():
    objects = [
        {"label": "circle", "attributes": ["red", "small", "striped"], "visible_fraction": 1.0},
        {"label": "star", "attributes": ["blue", "large", "solid"], "visible_fraction": 0.2},
    ]
    descriptions = region_descriptions.describe(objects, np.random.default_rng(0), per_object=40)
    assert len(descriptions) == 40  # the hidden star gets none
    allowed = {"red", *SIZE_SYNONYMS["small"], *FILL_SYNONYMS["striped"]}
    shapes = SHAPE_SYNONYMS["circle"]
    for text in descriptions:
        assert text.endswith(shapes), text
        words = text.removesuffix(next(s for s in shapes if text.endswith(s))).split()
        assert set(words) <= allowed, text
    # Each descriptor is named in some descriptions and left out of others.
    assert any("red" in d for d in descriptions) and not all("red" in d for d in descriptions)
