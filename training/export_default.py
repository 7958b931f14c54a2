"""``python -m training.export_default``: the shipped assets (:mod:`training.release.default_assets`)."""

from lxmert.errors import run_cli
from training.release.default_assets import main

if __name__ == "__main__":
    run_cli(main)
