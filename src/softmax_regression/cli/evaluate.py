"""``softmax-regression evaluate``: a trained model's accuracy, per-class precision, recall and
F1, and the most confused classes, as a table or JSON."""

from __future__ import annotations

import argparse
import json

from ..errors import ConfigError
from ._options import add_model_argument, finish


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "evaluate",
        help="test accuracy, per-class precision/recall/F1, most confused classes",
        description="Evaluate a trained model (model.safetensors or its run directory).",
    )
    add_model_argument(e)
    e.add_argument("--split", choices=("test", "train"), default="test", help="default: test")
    e.add_argument("--data-dir", help="directory with the Fashion-MNIST IDX files")
    e.add_argument("--top", type=int, default=5, help="confused pairs to list (default: 5)")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from ..runs.directory import resolve_model_path

    if args.top < 0:
        raise ConfigError(f"--top must not be negative, got {args.top}")
    resolve_model_path(args.model)  # a missing model is reported before torch is imported
    from ..data import load_fashion_mnist
    from ..evaluation import evaluate, format_report
    from ..runs.artifacts import load_model

    saved = load_model(args.model)
    data = load_fashion_mnist(args.split, args.data_dir)
    ev = evaluate(saved.model, data, normalize=saved.normalize, classes=saved.classes)
    if args.json:
        print(json.dumps({"model": str(saved.path), "split": args.split, **ev.to_dict(args.top)}))
    else:
        print(f"{saved.path} on the {args.split} split ({len(data)} images)")
        print(format_report(ev, args.top).replace("test accuracy", f"{args.split} accuracy", 1))
    return finish()
