"""scripts/region_descriptions.py: VG-style descriptions name only what the scene shows."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from training.world.language import FILL_SYNONYMS, SHAPE_SYNONYMS, SIZE_SYNONYMS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "region_descriptions.py"
spec = importlib.util.spec_from_file_location("region_descriptions", SCRIPT)
region_descriptions = importlib.util.module_from_spec(spec)
# A dataclass looks its module up in sys.modules while it is being built.
sys.modules[spec.name] = region_descriptions
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


def test_the_documented_commands_parse_to_their_flags():
    cfg = region_descriptions.parse_args(["runs/world", "runs/world-regions", "--per-object", "2"])
    assert cfg == region_descriptions.RegionDescriptionsConfig(
        "runs/world", "runs/world-regions", 2, 0, False
    )
    cfg = region_descriptions.parse_args(["runs/world", "runs/world-regions-only", "--only-regions"])
    assert (cfg.out, cfg.per_object, cfg.only_regions) == ("runs/world-regions-only", 2, True)
    assert region_descriptions.parse_args(["w", "o", "--seed", "5"]).seed == 5
