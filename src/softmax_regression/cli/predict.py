"""``softmax-regression predict``: classify image files, or rows of features, with a trained
model."""

from __future__ import annotations

import argparse
import itertools
import json
import sys

from ..errors import ConfigError
from ._options import add_model_argument, finish


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files (PNG, JPEG, ...) or rows of features with a trained model",
        description="Classify images the way the model's training images were made: for a "
        "Fashion-MNIST model each is turned grayscale, inverted when its background is light, "
        "trimmed, fitted into 28x28 keeping its aspect ratio; for a model of an image folder "
        "it is converted to the folder's mode and size (see docs/predict.md). Every readable "
        "file gets its answer; each unreadable one, an error line. A model of features "
        "classifies the rows of --features FILE.",
    )
    add_model_argument(p)
    p.add_argument("images", metavar="IMAGE", nargs="*", help="image files")
    p.add_argument(
        "--features",
        metavar="FILE",
        help="classify each row of this CSV/TSV (numbers; a header line is skipped) or .npy "
        "file, for a model trained on features",
    )
    p.add_argument("--top", type=int, default=3, help="classes to show per image (default: 3)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ImageError
    from ..runs.directory import resolve_model_path
    from . import PROG

    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    if (args.features is None) == (not args.images):
        raise ConfigError("give image files, or --features FILE for a model of features")
    resolve_model_path(args.model)  # missing files are reported before torch is imported
    if args.features is not None:
        return _predict_features(args)
    missing = [p for p in args.images if not Path(p).exists()]
    if len(missing) == len(args.images):  # nothing to classify: no need for torch either
        for p in missing[:-1]:
            print(f"{PROG}: error: {p}: no such file", file=sys.stderr)
        raise ImageError(f"{missing[-1]}: no such file")
    from ..predict import predict_each
    from ..runs.artifacts import load_model

    saved = load_model(args.model)
    preds = predict_each(saved, args.images, args.top)
    if args.json:
        print(json.dumps({"model": str(saved.path), "predictions": [p.to_dict() for p in preds]}))
    for p in preds:
        if p.error is not None:
            print(f"{PROG}: error: {p.error}", file=sys.stderr)
        elif not args.json:
            print(f"{p.source}: " + ", ".join(f"{c} {v:.3f}" for c, v in p.top))
    if any(p.error is not None for p in preds):
        return ImageError.exit_code
    return finish()


def _predict_features(args: argparse.Namespace) -> int:
    from ..predict import iter_predict_features
    from ..runs.artifacts import load_model

    saved = load_model(args.model)
    # Printed as the rows are classified, a block at a time: a file of any size streams
    # through (the JSON is written piecewise, the same text json.dumps gives).
    preds = iter_predict_features(saved, args.features, args.top)
    first = next(preds)
    if args.json:
        head = json.dumps({"model": str(saved.path), "features": args.features})
        sys.stdout.write(head[:-1] + ', "predictions": [')
        for i, p in enumerate(itertools.chain([first], preds)):
            row = p.to_dict("row") | {"row": int(p.source)}
            sys.stdout.write((", " if i else "") + json.dumps(row))
        sys.stdout.write("]}\n")
    else:
        for p in itertools.chain([first], preds):
            print(f"row {p.source}: " + ", ".join(f"{c} {v:.3f}" for c, v in p.top))
    return finish()
