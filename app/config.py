"""Where the app finds its models, checkpoints and sample images; read from the environment once per process.

The defaults are the repository's own ``assets/`` so that ``streamlit run app/main.py`` works on a fresh clone. A
deployment (or a test) points elsewhere with environment variables, never with a path typed into the page: the
comparison page lists only checkpoints found under ``checkpoints_dir``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_ENV = "LXMERT_ASSETS_DIR"
CHECKPOINTS_ENV = "LXMERT_CHECKPOINTS_DIR"
DEVICE_ENV = "LXMERT_DEVICE"
PRECISION_ENV = "LXMERT_PRECISION"
DATASETS_ENV = "LXMERT_DATASETS_DIR"


@dataclass(frozen=True)
class AppConfig:
    """Locations and device of one running app.

    Attributes:
        assets_dir: holds the default model set ``default/`` (``model_set.json``, ``default/detector`` and the
            default checkpoints), plus ``samples/`` (the gallery and the pool of pre-rendered synthetic scenes);
            searched for other model sets too (``app/sets.py``).
        checkpoints_dir: searched (a few levels deep) for model sets, and for checkpoints outside them, which join
            the default set.
        device: "cuda" when a GPU is present, else "cpu"; ``LXMERT_DEVICE`` overrides.
        precision: what the models compute in: ``LXMERT_PRECISION``, ``auto`` (the default: bf16 autocast where
            the device runs it natively and the checkpoint is large enough for it to pay, see
            :mod:`lxmert.precision`), ``bf16`` or ``fp32``. The detector always runs in fp32.
        datasets_dir: searched (a few levels deep) for datasets, directories holding a ``dataset.json``
            (:mod:`lxmert.data.dataset`), for the input source "Dataset".
    """

    assets_dir: Path = REPO_ROOT / "assets"
    checkpoints_dir: Path = REPO_ROOT / "assets"
    device: str = "cpu"
    precision: str = "auto"
    datasets_dir: Path = REPO_ROOT / "assets" / "datasets"

    @property
    def default_dir(self) -> Path:
        return self.assets_dir / "default"

    @property
    def detector_dir(self) -> Path:
        """The default set's detector (a page uses its chosen set's: ``Inputs.detector_dir``)."""
        return self.default_dir / "detector"

    @property
    def samples_dir(self) -> Path:
        return self.assets_dir / "samples"

    @classmethod
    def from_env(cls) -> AppConfig:
        """``LXMERT_ASSETS_DIR``, ``LXMERT_CHECKPOINTS_DIR`` (default: the assets dir), ``LXMERT_DEVICE``,
        ``LXMERT_PRECISION`` and ``LXMERT_DATASETS_DIR`` (default: ``datasets/`` in the assets dir).

        Raises:
            ValueError: ``LXMERT_PRECISION`` is not auto, bf16 or fp32.
        """
        from lxmert.precision import PRECISIONS

        assets = Path(os.environ.get(ASSETS_ENV, REPO_ROOT / "assets")).expanduser().resolve()
        checkpoints = Path(os.environ.get(CHECKPOINTS_ENV, assets)).expanduser().resolve()
        device = os.environ.get(DEVICE_ENV) or _device()
        precision = os.environ.get(PRECISION_ENV) or "auto"
        if precision not in PRECISIONS:
            raise ValueError(f"{PRECISION_ENV} must be one of {PRECISIONS}, got {precision!r}")
        datasets = Path(os.environ.get(DATASETS_ENV, assets / "datasets")).expanduser().resolve()
        return cls(
            assets_dir=assets,
            checkpoints_dir=checkpoints,
            device=device,
            precision=precision,
            datasets_dir=datasets,
        )


def _device() -> str:
    import torch  # only here: reading the config must not cost the torch import by itself

    return "cuda" if torch.cuda.is_available() else "cpu"


__all__ = [
    "ASSETS_ENV",
    "CHECKPOINTS_ENV",
    "DATASETS_ENV",
    "DEVICE_ENV",
    "PRECISION_ENV",
    "AppConfig",
    "REPO_ROOT",
]
