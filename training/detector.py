"""``python -m training.detector``: the detector-training command (:mod:`training.detection.train`)."""

from lxmert.errors import run_cli
from training.detection.train import main

if __name__ == "__main__":
    run_cli(main)
