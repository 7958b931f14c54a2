"""``python -m training.extract``: region features of a folder of images (:mod:`training.detection.extraction`)."""

from lxmert.errors import run_cli
from training.detection.extraction import main

if __name__ == "__main__":
    run_cli(main)
