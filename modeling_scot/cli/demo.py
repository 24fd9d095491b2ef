"""The `scot demo` command."""

from __future__ import annotations

import argparse
import os

from ..demo.settings import INDEX_ENV, MODEL_ENV, DemoSettings
from .common import add_method_options, add_runtime_options, add_slerp_option

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
PORT_ENV = "GRADIO_SERVER_PORT"
HOST_ENV = "GRADIO_SERVER_NAME"


def server_address(args: argparse.Namespace) -> tuple[str, int]:
    """`--host` and `--port`, else GRADIO_SERVER_NAME and GRADIO_SERVER_PORT, else 127.0.0.1:7860."""
    host = args.host or os.environ.get(HOST_ENV) or DEFAULT_HOST
    if args.port is not None:
        port, origin = args.port, "--port"
    else:
        value = os.environ.get(PORT_ENV) or str(DEFAULT_PORT)
        try:
            port, origin = int(value), PORT_ENV
        except ValueError:
            raise ValueError(f"{PORT_ENV}={value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{origin} {port} is not a port number (1 to 65535)")
    return host, port


def cmd_demo(args: argparse.Namespace) -> int:
    """Serve the Gradio demo: search a gallery with a reference image and a modification text, with SCOT or a
    baseline. With no options it runs offline on the quickstart's model (trained first if missing) and the
    built-in world's benchmark gallery."""
    from ..demo.app import create_app, launch_app

    host, port = server_address(args)
    settings = DemoSettings.from_env(
        args.model,
        args.index,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        image_tower=args.image_tower,
        lincir=args.lincir,
        isa=args.isa,
        slerp_alpha=args.slerp_alpha,
    )
    launch_app(create_app(settings), host, port)
    return 0


def add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `scot demo`."""
    parser = subparsers.add_parser(
        "demo", help="serve the Gradio demo (image + text -> gallery images)", description=cmd_demo.__doc__
    )
    parser.add_argument(
        "--model",
        metavar="ID|DIR",
        help=f"Hub id or folder of a saved SCOT model (default: ${MODEL_ENV}, else $SCOT_HOME/quickstart/model)",
    )
    parser.add_argument(
        "--index",
        metavar="DIR",
        help=f"index folder written by scot index (default: ${INDEX_ENV}, else the world's benchmark gallery)",
    )
    parser.add_argument("--port", type=int, help=f"port (default: ${PORT_ENV}, else {DEFAULT_PORT})")
    parser.add_argument(
        "--host",
        metavar="ADDRESS",
        help=f"address to listen on; 0.0.0.0 serves other machines (default: ${HOST_ENV}, else {DEFAULT_HOST})",
    )
    add_method_options(parser)
    add_slerp_option(parser, "$SCOT_DEMO_SLERP_ALPHA, else on the world's gallery the quickstart's validation-tuned value, else 0.8")
    add_runtime_options(parser, batch_size=64)
    parser.set_defaults(handler=cmd_demo)


__all__ = ["add_demo_parser", "cmd_demo", "server_address"]
