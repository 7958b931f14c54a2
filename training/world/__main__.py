"""``python -m training.world --out DIR --images N --seed S``: generate a synthetic world (see generate.py)."""

from __future__ import annotations

import json
import time

from lxmert.config_cli import parse_config
from training.world.generate import WorldConfig, build_world


def parse_args(argv: list[str] | None = None) -> WorldConfig:
    return parse_config(WorldConfig, argv, prog="python -m training.world", doc=__doc__, title="world")


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    start = time.perf_counter()
    summary = build_world(cfg)
    print(json.dumps(summary["counts"], indent=1))
    print(f"world written to {cfg.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
