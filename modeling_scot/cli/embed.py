"""`scot embed`: images or texts embedded by a model's frozen encoder into a safetensors file."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from accelerate import PartialState
from safetensors.torch import save_file

from ..encoding import encode_texts
from ..io_utils import check_output_path
from ..retrieval import ImageFiles, embed_gallery
from ..retrieval.gallery import DEFAULT_CHUNK_SIZE
from ..retrieval.sources import image_files
from ..runtime import load_model
from .common import add_compile_option, add_runtime_options


def _write_embeddings(path: Path, embeds, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"embeds": embeds.contiguous()}, str(tmp), metadata={"ids": json.dumps(ids)})
    os.replace(tmp, path)


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed images or texts with a SCOT model's frozen encoder into a safetensors file. Images go through the
    gallery path: resumable chunks beside the output, and under `accelerate launch` each process embeds its share
    (the main process writes the file)."""
    output = check_output_path(args.output, "--output", folder=False)
    state = PartialState()
    if args.images:
        files = image_files(args.images)
        model = load_model(args.model, args.device, args.dtype, compile_encoders=args.compile)
        cache = output.with_name(output.name + ".chunks")
        gallery = embed_gallery(
            model, ImageFiles(files), cache, batch_size=args.batch_size, num_workers=args.num_workers,
            chunk_size=args.chunk_size,
        )  # fmt: skip
        embeds, ids = gallery.embeddings, gallery.ids
        if state.is_main_process:
            shutil.rmtree(cache, ignore_errors=True)
    elif not state.is_main_process:
        return 0
    else:
        texts_path = Path(args.texts)
        if not texts_path.is_file():
            raise FileNotFoundError(f"--texts file {args.texts!r} does not exist")
        try:
            ids = texts_path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise ValueError(f"--texts file {args.texts!r} is not UTF-8 text: byte {err.start} cannot be decoded") from None
        model = load_model(args.model, args.device, args.dtype, compile_encoders=args.compile)
        embeds = encode_texts(model, ids, batch_size=args.batch_size)
    if state.is_main_process:
        _write_embeddings(output, embeds, ids)
        print(f"wrote {' x '.join(map(str, embeds.shape))} embeddings to {args.output}")
    return 0


def add_embed_parser(commands: argparse._SubParsersAction) -> None:
    """Register `scot embed`."""
    embed = commands.add_parser("embed", help="embed images or texts with a model's frozen encoder", description=cmd_embed.__doc__)
    embed.add_argument("--model", required=True, help="Hub id or folder of a saved SCOT model")
    source = embed.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    source.add_argument("--texts", metavar="FILE", help="a text file, one text per line")
    embed.add_argument(
        "--output", required=True,
        help="output .safetensors file: tensor 'embeds' (N, D; images of a multi-vector encoder such as BLIP-2: "
             "N, K, D), metadata 'ids'",
    )  # fmt: skip
    add_runtime_options(embed, batch_size=64)
    add_compile_option(embed)
    embed.add_argument("--num-workers", type=int, default=2, help="processes decoding images while the model runs")
    embed.add_argument(
        "--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
        help="images per resumable chunk file (the unit each process of an `accelerate launch` run embeds)",
    )  # fmt: skip
    embed.set_defaults(handler=cmd_embed)


__all__ = ["add_embed_parser", "cmd_embed"]
