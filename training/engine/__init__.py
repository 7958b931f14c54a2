"""The shared training engine: the trainer loop, distributed helpers and the official task metrics."""
