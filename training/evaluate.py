"""``python -m training.evaluate``: predict a split with a checkpoint, write the official submission file, score it (:mod:`training.tasks.evaluation`)."""

from lxmert.errors import run_cli
from training.tasks.evaluation import main

if __name__ == "__main__":
    run_cli(main)
