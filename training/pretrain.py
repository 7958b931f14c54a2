"""``python -m training.pretrain``: pre-training LXMERT (:mod:`training.tasks.pretraining_run`)."""

from lxmert.errors import run_cli
from training.tasks.pretraining_run import main

if __name__ == "__main__":
    run_cli(main)
