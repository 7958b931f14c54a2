"""``python -m training.paper_tables``: the paper's Tables 3-5 on the world (:mod:`training.experiments.paper_tables`)."""

from lxmert.errors import run_cli
from training.experiments.paper_tables import main

if __name__ == "__main__":
    run_cli(main)
