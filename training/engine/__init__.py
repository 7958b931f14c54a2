"""The shared training engine: the trainer loop, distributed helpers, command lines from config dataclasses,
and the official task metrics."""
