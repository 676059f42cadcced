"""``softmax-regression train | evaluate | predict``: argv to the library, results to text."""

from __future__ import annotations

import argparse
import gc
import json
from dataclasses import fields
from typing import Any

from ..config import DEVICES, ENGINES, LOSSES, OPTIMIZERS, TrainConfig
from ..errors import ConfigError, SoftmaxRegressionError
from .extra import add_train_options, train_extended

_D = {f.name: f.default for f in fields(TrainConfig)}

# (flag, config field, type, help); every default shown is TrainConfig's.
_TRAIN_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--epochs", "epochs", int, "passes over the training set"),
    ("--lr", "lr", float, "learning rate"),
    ("--batch-size", "batch_size", int, "examples per SGD step"),
    ("--optimizer", "optimizer", str, f"one of {', '.join(OPTIMIZERS)}"),
    ("--momentum", "momentum", float, "SGD momentum"),
    ("--weight-decay", "weight_decay", float, "L2 penalty (torch.optim semantics)"),
    ("--seed", "seed", int, "seed of the weights, the shuffling and the validation split"),
    ("--device", "device", str, f"one of {', '.join(DEVICES)}"),
    ("--val-split", "val_split", int, "training images held out for validation (stratified)"),
    ("--loss", "loss", str, f"one of {', '.join(LOSSES)} (torch = nn.CrossEntropyLoss)"),
    ("--engine", "engine", str, f"one of {', '.join(ENGINES)}"),
    ("--data-dir", "data_dir", str, "directory with the Fashion-MNIST IDX files"),
]


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train",
        help="train the book's softmax regression and write a run directory",
        description="Train softmax regression on Fashion-MNIST (the book's recipe by default) "
        "and write runs/<name>/ with metrics, figures, the model and a resume checkpoint.",
    )
    for flag, name, typ, text in _TRAIN_OPTIONS:
        default = _D[name]
        shown = "discovered" if default is None else default
        t.add_argument(flag, dest=name, type=typ, default=None, help=f"{text} (default: {shown})")
    t.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_const",
        const=False,
        default=None,
        help="feed raw 0-255 pixels instead of dividing by 255 (a classic mistake, for study)",
    )
    t.add_argument("--out", help="run directory to create (default: runs/<date-time>)")
    t.add_argument("--runs-dir", default="runs", help="where default run directories go")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last epoch")
    t.add_argument("--no-plots", action="store_true", help="skip the four PNG figures")
    t.add_argument("--quiet", "-q", action="store_true", help="print only the final summary")
    add_train_options(t)  # --recipe and --seeds
    t.set_defaults(func=_train)

    e = sub.add_parser(
        "evaluate",
        help="test accuracy, per-class precision/recall/F1, most confused classes",
        description="Evaluate a trained model (model.safetensors or its run directory).",
    )
    e.add_argument("model", metavar="MODEL", help="model.safetensors or a run directory")
    e.add_argument("--split", choices=("test", "train"), default="test", help="default: test")
    e.add_argument("--data-dir", help="directory with the Fashion-MNIST IDX files")
    e.add_argument("--top", type=int, default=5, help="confused pairs to list (default: 5)")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "predict",
        help="classify image files (PNG, JPEG, ...) with a trained model",
        description="Classify images: each is turned grayscale, inverted when its background "
        "is light, trimmed, fitted into 28x28 keeping its aspect ratio (see the README).",
    )
    p.add_argument("model", metavar="MODEL", help="model.safetensors or a run directory")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--top", type=int, default=3, help="classes to show per image (default: 3)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_predict)


def _finish() -> int:
    """Success. The process usually ends next: freezing the objects alive now spares the
    interpreter's final garbage collection a walk through everything torch's import created
    (0.35 s of every command here, measured). For a caller in the same process the only
    effect is that these objects are left out of later collections."""
    gc.freeze()
    return 0


def _given(args: argparse.Namespace) -> dict[str, Any]:
    names = [name for _, name, _, _ in _TRAIN_OPTIONS] + ["normalize"]
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _train(args: argparse.Namespace) -> int:
    from .. import runs
    from ..progress import ConsoleProgress

    given = _given(args)
    if args.recipe != "book" or args.seeds is not None:
        train_extended(args, given)
        return _finish()
    if args.resume is not None:
        if args.out is not None:
            raise ConfigError("--resume continues a run in place; drop --out")
        config = runs.resume_config(args.resume, given)
    else:
        config = TrainConfig(**given)
    columns = ["epoch", "train_loss", "train_acc", "test_acc"]
    columns += ["val_acc"] if config.val_split else []
    progress = None if args.quiet else ConsoleProgress([*columns, "seconds"])
    try:
        outcome = runs.train_run(
            config,
            out=args.out,
            root=args.runs_dir,
            resume=args.resume,
            progress=progress,
            plots=not args.no_plots,
        )
    except OSError as e:
        raise SoftmaxRegressionError(
            f"cannot write {e.filename or 'a run file'}: {e.strerror or e}"
        ) from None
    finally:
        if progress is not None:
            progress.close()
    r = outcome.result
    final = r.final
    seconds = sum(rec.seconds for rec in r.history)
    parts = [f"train loss {final.train_loss:.4f}", f"train acc {final.train_acc:.4f}"]
    if final.val_acc is not None:
        parts.append(f"val acc {final.val_acc:.4f}")
    parts.append(f"test acc {final.test_acc:.4f}")
    print(f"final ({len(r.history)} epochs, {seconds:.2f} s on {r.device}): " + ", ".join(parts))
    names = ", ".join(p.name for p in outcome.files)
    print(f"run saved in {outcome.directory}/: {names}")
    return _finish()


def _evaluate(args: argparse.Namespace) -> int:
    from ..artifacts import load_model
    from ..data import load_fashion_mnist
    from ..evaluation import evaluate, format_report

    if args.top < 0:
        raise ConfigError(f"--top must not be negative, got {args.top}")
    saved = load_model(args.model)
    data = load_fashion_mnist(args.split, args.data_dir)
    ev = evaluate(saved.model, data, normalize=saved.normalize, classes=saved.classes)
    if args.json:
        print(json.dumps({"model": str(saved.path), "split": args.split, **ev.to_dict(args.top)}))
    else:
        print(f"{saved.path} on the {args.split} split ({len(data)} images)")
        print(format_report(ev, args.top).replace("test accuracy", f"{args.split} accuracy", 1))
    return _finish()


def _predict(args: argparse.Namespace) -> int:
    from ..artifacts import load_model
    from ..predict import predict_files

    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    saved = load_model(args.model)
    preds = predict_files(saved, args.images, args.top)
    if args.json:
        print(json.dumps({"model": str(saved.path), "predictions": [p.to_dict() for p in preds]}))
    else:
        for p in preds:
            print(f"{p.source}: " + ", ".join(f"{c} {v:.3f}" for c, v in p.top))
    return _finish()
