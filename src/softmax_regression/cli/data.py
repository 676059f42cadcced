"""``softmax-regression data where|verify|download|show``."""

from __future__ import annotations

import argparse

from ..data import load_fashion_mnist, locate
from ..data.sources import SPLITS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="find, verify, download and look at Fashion-MNIST")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(p))
    dsub.required = True
    w = dsub.add_parser("where", help="which files would be used, and how they were found")
    w.add_argument("--data-dir", help="directory holding the four IDX files (.gz or raw)")
    w.set_defaults(func=_where)
    v = dsub.add_parser("verify", help="parse both splits and check their SHA-256")
    v.add_argument("--data-dir", help="directory holding the four IDX files (.gz or raw)")
    v.set_defaults(func=_verify)


def _where(args: argparse.Namespace) -> int:
    found = locate(args.data_dir)
    print(f"Fashion-MNIST found in {found.directory} ({found.how})")
    for path in found.files.values():
        print(f"  {path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    for split in SPLITS:
        ds = load_fashion_mnist(split, args.data_dir)
        print(f"{split}: {len(ds)} images, checksums OK")
    return 0
