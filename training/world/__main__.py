"""``python -m training.world --out DIR --images N --seed S``: generate a synthetic world (see generate.py)."""

from __future__ import annotations

import argparse
import json
import time

from lxmert.config_cli import add_dataclass_arguments, dataclass_from_args
from training.world.generate import WorldConfig, build_world


def parse_args(argv: list[str] | None = None) -> WorldConfig:
    parser = argparse.ArgumentParser(prog="python -m training.world", description=__doc__)
    add_dataclass_arguments(parser, WorldConfig, "world")
    return dataclass_from_args(WorldConfig, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    start = time.perf_counter()
    summary = build_world(cfg)
    print(json.dumps(summary["counts"], indent=1))
    print(f"world written to {cfg.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
