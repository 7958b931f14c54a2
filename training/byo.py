"""``python -m training.byo``: your own images and questions to a QA model (:mod:`training.tasks.own_data`)."""

from lxmert.errors import run_cli
from training.tasks.own_data import main

if __name__ == "__main__":
    run_cli(main)
