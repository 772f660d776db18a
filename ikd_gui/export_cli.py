"""`ikd export`: a checkpoint as an ONNX or TorchScript file that runs without IKD Studio."""

from __future__ import annotations

import json
import sys


def add_export_parser(subparsers) -> None:
    from .engine.export import EXPORT_FORMATS

    p = subparsers.add_parser(
        "export", help="write a checkpoint as ONNX or TorchScript",
        description="Write a checkpoint as an ONNX or TorchScript model with the preprocessing built in: it takes "
                    "grey images as float32 [N, 1, S, S] in [0, 1] (S = the checkpoint's image size) and returns "
                    "logits [N, classes]. The classes, image size and this contract are stored in the file's "
                    "'ikd_export' metadata. ONNX needs the onnx package: pip install 'ikd-gui[export]'.")
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    p.add_argument("--out", required=True, metavar="FILE", help="file to write (replaced if it exists)")
    p.add_argument("--json", action="store_true", help="print the export metadata as JSON")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from .engine.export import export_checkpoint

    metadata = export_checkpoint(args.checkpoint, args.format, args.out)
    if args.json:
        print(json.dumps(metadata, indent=2))
    else:
        print(f"{metadata['arch']}, classes {', '.join(metadata['classes'])}, input [N, 1, {metadata['image_size']}, "
              f"{metadata['image_size']}] grey in [0, 1]", file=sys.stderr)
        print(args.out)
    return 0
