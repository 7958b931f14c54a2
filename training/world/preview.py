"""A contact sheet of world scenes with their ground-truth boxes and labels, for people to look at.

python -m training.world.preview --out docs/images/world_samples.png --scenes 6 --seed 0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lxmert.config_cli import parse_config
from lxmert.fileio import atomic_write
from training.world.scenes import Scene, render_scene, sample_scene

BOX_COLOUR = (255, 0, 255)
LABEL_BACKGROUND = (0, 0, 0)
LABEL_TEXT = (255, 255, 255)


def draw_annotated(scene: Scene, scale: int = 2, font_size: int = 11) -> Image.Image:
    """The rendered scene, enlarged ``scale`` times, with each box and a 'size colour fill shape' label."""
    image = render_scene(scene).resize((scene.width * scale, scene.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    for obj in scene.objects:
        x1, y1, x2, y2 = (v * scale for v in obj.box)
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=BOX_COLOUR, width=2)
        label = f"{obj.size} {obj.colour} {obj.fill} {obj.shape}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        width, height = right - left + 3, bottom - top + 3
        tx = max(0, min(x1, image.width - width))  # keep the label inside the picture
        ty = y1 - height if y1 - height >= 0 else min(y2 + 1, image.height - height)
        draw.rectangle((tx, ty, tx + width, ty + height), fill=LABEL_BACKGROUND)
        draw.text((tx + 1 - left, ty + 1 - top), label, fill=LABEL_TEXT, font=font)
    return image


def contact_sheet(scenes: list[Scene], columns: int = 3, scale: int = 2, gap: int = 6) -> Image.Image:
    tiles = [draw_annotated(s, scale) for s in scenes]
    width, height = tiles[0].size
    rows = -(-len(tiles) // columns)
    sheet = Image.new(
        "RGB", (columns * width + (columns - 1) * gap, rows * height + (rows - 1) * gap), "white"
    )
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % columns) * (width + gap), (k // columns) * (height + gap)))
    return sheet


@dataclass
class PreviewConfig:
    out: str = field(default="docs/images/world_samples.png", metadata={"help": "PNG file to write"})
    scenes: int = field(default=6, metadata={"help": "number of scenes on the sheet"})
    columns: int = field(default=3, metadata={"help": "scenes per row"})
    seed: int = field(default=0, metadata={"help": "random seed of the scenes"})
    scale: int = field(default=2, metadata={"help": "enlargement of each scene, so labels fit"})
    scene_kinds: int = field(default=1, metadata={"help": "kinds of scene, as python -m training.world's"})


def main(argv: list[str] | None = None) -> None:
    args = parse_config(
        PreviewConfig, argv, prog="python -m training.world.preview", doc=__doc__, title="preview"
    )
    rng = np.random.default_rng(args.seed)
    scenes = [sample_scene(rng, kinds=args.scene_kinds) for _ in range(args.scenes)]
    sheet = contact_sheet(scenes, args.columns, args.scale)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: sheet.save(f, format="PNG"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
