"""Running the Streamlit app in-process with AppTest, as the app's tests do, and what a script gets for its sample.

``start_app`` points the app at an assets directory (tests/app_toy_assets.py builds a tiny one) through the
environment; the reference helpers call ``analysis`` directly on the same files, independent of the app.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from app_toy_assets import NUM_REGIONS, QUESTIONS
from streamlit.testing.v1 import AppTest

from analysis.inputs import Example, example_from_regions
from app.config import ASSETS_ENV, CHECKPOINTS_ENV, DEVICE_ENV
from lxmert.checkpoints import LoadedCheckpoint, load_checkpoint
from lxmert.detection import Detector

if TYPE_CHECKING:
    from app.results import Query

APP = Path(__file__).resolve().parents[1] / "app" / "main.py"
TIMEOUT = 120  # the first run in a process imports torch, captum and plotly and loads the models
SAMPLE = "scene_0.png"  # the gallery's first image, the one the app opens on; its sidecar suggests QUESTIONS


def start_app(
    assets: Path | None,
    monkeypatch: pytest.MonkeyPatch,
    *,
    checkpoints: Path | None = None,
    env: Mapping[str, str | None] | None = None,
    timeout: float = TIMEOUT,
) -> AppTest:
    """The app on CPU, run once.

    Args:
        assets: its assets directory (unset: the repository's own ``assets/``).
        checkpoints: the checkpoints directory searched for more (unset: none beyond the assets).
        env: further environment variables to set, or to unset where the value is None.
        timeout: how long one run of the script may take, in seconds.
    """
    settings = {ASSETS_ENV: assets, CHECKPOINTS_ENV: checkpoints, DEVICE_ENV: "cpu", **(env or {})}
    for name, value in settings.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))
    return AppTest.from_file(str(APP), default_timeout=timeout).run()


def open_page(app: AppTest, page: str) -> AppTest:
    """Switch to ``app_pages/<page>.py`` and run it."""
    return app.switch_page(f"app_pages/{page}.py").run()


def assert_no_exception(app: AppTest) -> None:
    assert not app.exception, [e.value for e in app.exception]


def assert_clean(app: AppTest, where: object = None) -> None:
    """No exception and no error message on the page; ``where`` (say, the page's name) leads the failure message."""
    exceptions, errors = [e.value for e in app.exception], [e.value for e in app.error]
    assert not exceptions, exceptions if where is None else (where, exceptions)
    assert not errors, errors if where is None else (where, errors)


def answer_headlines(app: AppTest) -> list[str]:
    """The answers the page shows, first to last: ``### Answer: **<answer>**  \n<p>% probability`` each."""
    return [m.value for m in app.markdown if m.value.startswith("### Answer: ")]


def parse_headline(headline: str) -> tuple[str, float]:
    """An answer headline's answer, and its probability in percent as shown."""
    answer, probability = re.match(r"### Answer: \*\*(.+)\*\*\s+([\d.]+)% probability", headline).groups()
    return answer, float(probability)


def first_answer(app: AppTest) -> tuple[str, float]:
    """The first answer the page shows, and its probability in percent as shown."""
    return parse_headline(answer_headlines(app)[0])


def sample_example(
    assets: Path, checkpoint: str = "model", text: str = QUESTIONS[0]
) -> tuple[LoadedCheckpoint, Example]:
    """Checkpoint ``default/<checkpoint>`` and its input for the sample and ``text``, with the regions the default
    detector finds: what a script gets for what the app opens on."""
    detector = Detector.from_pretrained(assets / "default" / "detector")
    loaded = load_checkpoint(assets / "default" / checkpoint)
    regions = detector([assets / "samples" / SAMPLE])[0]
    return loaded, example_from_regions(loaded.tokenizer, text, regions)


def sample_query(assets: Path, text: str = QUESTIONS[0], **fields) -> Query:
    """The app's :class:`app.results.Query` for the sample with the default model, as the app opens on it;
    ``fields`` replace any of its fields."""
    from app.results import Query

    return Query(
        **{
            "detector": str(assets / "default" / "detector"),
            "checkpoint": str(assets / "default" / "model"),
            "checkpoint_name": "default/model",
            "device": "cpu",
            "precision": "fp32",
            "image": (assets / "samples" / SAMPLE).read_bytes(),
            "image_name": SAMPLE,
            "num_regions": NUM_REGIONS,
            "text": text,
            **fields,
        }
    )
