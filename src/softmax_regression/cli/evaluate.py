"""``softmax-regression evaluate``: a trained model's accuracy, per-class precision, recall and
F1, and the most confused classes, as a table or JSON."""

from __future__ import annotations

import argparse
import json

from ..errors import ConfigError, DataError, SoftmaxRegressionError
from ._options import add_data_options, add_model_argument, data_spec, finish, load_spec


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
    add_data_options(e)
    e.set_defaults(func=_evaluate)


def run_data_spec(model: str) -> dict | None:
    """The data description a run directory was trained on (its config.json), if any."""
    from pathlib import Path

    from ..runs.directory import read_run_config

    directory = Path(model)
    if not directory.is_dir():
        directory = directory.parent
    try:
        settings = read_run_config(directory)["config"]
    except SoftmaxRegressionError:
        return None
    spec = settings.get("data")
    return spec if isinstance(spec, dict) else None


def _evaluate(args: argparse.Namespace) -> int:
    from ..runs.directory import resolve_model_path

    if args.top < 0:
        raise ConfigError(f"--top must not be negative, got {args.top}")
    resolve_model_path(args.model)  # a missing model is reported before torch is imported
    spec = data_spec(args)
    if spec is None:
        spec = run_data_spec(args.model)
    from ..evaluation import evaluate, format_report
    from ..runs.artifacts import load_model

    saved = load_model(args.model)
    if spec is None and saved.data.get("name", "Fashion-MNIST") != "Fashion-MNIST":
        raise ConfigError(
            f"{saved.path} was trained on {saved.data['name']}; say where that data is with "
            "--data SPEC"
        )
    if spec is None:
        from ..data import load_fashion_mnist

        data = load_fashion_mnist(args.split, args.data_dir)
    else:
        train, test = load_spec(spec, args.data_dir, quiet=args.json)
        data = test if args.split == "test" else train
    _check_fits(saved, data)
    ev = evaluate(saved.model, data, normalize=saved.preprocessing, classes=saved.classes)
    if args.json:
        print(json.dumps({"model": str(saved.path), "split": args.split, **ev.to_dict(args.top)}))
    else:
        what = "images" if data.is_image else "examples"
        print(f"{saved.path} on the {args.split} split ({len(data)} {what})")
        print(format_report(ev, args.top).replace("test accuracy", f"{args.split} accuracy", 1))
    return finish()


def _check_fits(saved, data) -> None:
    """The data must be what the model takes: the same input shape and class names."""
    if tuple(data.input_shape) != tuple(saved.input_shape):
        raise DataError(
            f"{saved.path} takes inputs of shape {_shape(saved.input_shape)}; the data's are "
            f"{_shape(data.input_shape)}"
        )
    if tuple(data.classes) != tuple(saved.classes):
        extra = sorted(set(data.classes) - set(saved.classes))
        detail = f" (the data has {extra[0]!r})" if extra else ""
        raise DataError(
            f"the data's {len(data.classes)} classes are not the model's {len(saved.classes)}"
            f"{detail}"
        )


def _shape(shape) -> str:
    return f"{shape[0]} features" if len(shape) == 1 else "x".join(str(n) for n in shape)
