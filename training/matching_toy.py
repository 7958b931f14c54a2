"""``python -m training.matching_toy``: a toy matching problem (:mod:`training.experiments.toy_matching`)."""

from lxmert.errors import run_cli
from training.experiments.toy_matching import main

if __name__ == "__main__":
    run_cli(main)
