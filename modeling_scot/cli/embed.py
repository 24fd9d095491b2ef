"""`scot embed`: images or texts embedded by a model's frozen encoder into a safetensors file."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from safetensors.torch import save_file

from ..encoding import encode_images, encode_texts
from ..retrieval.sources import image_files
from ..runtime import load_model
from .common import add_runtime_options


def _write_embeddings(path: Path, embeds, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"embeds": embeds.contiguous()}, str(tmp), metadata={"ids": json.dumps(ids)})
    os.replace(tmp, path)


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed images or texts with a SCOT model's frozen encoder into a safetensors file."""
    if args.images:
        files = image_files(args.images)
        model = load_model(args.model, args.device, args.dtype)
        embeds = encode_images(model, [str(f) for f in files], batch_size=args.batch_size)
        ids = [str(f) for f in files]
    else:
        texts_path = Path(args.texts)
        if not texts_path.is_file():
            raise FileNotFoundError(f"--texts file {args.texts!r} does not exist")
        try:
            ids = texts_path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise ValueError(f"--texts file {args.texts!r} is not UTF-8 text: byte {err.start} cannot be decoded") from None
        model = load_model(args.model, args.device, args.dtype)
        embeds = encode_texts(model, ids, batch_size=args.batch_size)
    _write_embeddings(Path(args.output), embeds, ids)
    print(f"wrote {embeds.shape[0]} x {embeds.shape[1]} embeddings to {args.output}")
    return 0


def add_embed_parser(commands: argparse._SubParsersAction) -> None:
    """Register `scot embed`."""
    embed = commands.add_parser("embed", help="embed images or texts with a model's frozen encoder", description=cmd_embed.__doc__)
    embed.add_argument("--model", required=True, help="Hub id or folder of a saved SCOT model")
    source = embed.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    source.add_argument("--texts", metavar="FILE", help="a text file, one text per line")
    embed.add_argument("--output", required=True, help="output .safetensors file (tensor 'embeds', metadata 'ids')")
    add_runtime_options(embed, batch_size=64)
    embed.set_defaults(handler=cmd_embed)


__all__ = ["add_embed_parser", "cmd_embed"]
