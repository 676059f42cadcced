"""``softmax-regression predict``: classify image files with a trained model."""

from __future__ import annotations

import argparse
import json

from ..errors import ConfigError
from ._options import add_model_argument, finish


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files (PNG, JPEG, ...) with a trained model",
        description="Classify images: each is turned grayscale, inverted when its background "
        "is light, trimmed, fitted into 28x28 keeping its aspect ratio (see the README).",
    )
    add_model_argument(p)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--top", type=int, default=3, help="classes to show per image (default: 3)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ImageError
    from ..runs.directory import resolve_model_path

    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    resolve_model_path(args.model)  # missing files are reported before torch is imported
    missing = next((p for p in args.images if not Path(p).exists()), None)
    if missing is not None:
        raise ImageError(f"{missing}: no such file")
    from ..predict import predict_files
    from ..runs.artifacts import load_model

    saved = load_model(args.model)
    preds = predict_files(saved, args.images, args.top)
    if args.json:
        print(json.dumps({"model": str(saved.path), "predictions": [p.to_dict() for p in preds]}))
    else:
        for p in preds:
            print(f"{p.source}: " + ", ".join(f"{c} {v:.3f}" for c, v in p.top))
    return finish()
