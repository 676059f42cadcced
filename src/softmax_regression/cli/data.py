"""``softmax-regression data where|verify|download|show|export``."""

from __future__ import annotations

import argparse
import sys

from ..data.sources import FILES, SPLITS, cache_dir, locate
from ..errors import CorruptDataError

_DATA_DIR_HELP = (
    "directory holding the four IDX files (.gz or raw, or under FashionMNIST/raw/); "
    "default: $SOFTMAX_REGRESSION_DATA, else ../data, the user cache, the Debian package"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="find, verify, download and look at Fashion-MNIST")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(p))
    dsub.required = True

    w = dsub.add_parser("where", help="which files would be used, and how they were found")
    w.add_argument("--data-dir", help=_DATA_DIR_HELP)
    w.set_defaults(func=_where)

    v = dsub.add_parser("verify", help="check every file: IDX structure, counts, labels, SHA-256")
    v.add_argument("--data-dir", help=_DATA_DIR_HELP)
    v.set_defaults(func=_verify)

    d = dsub.add_parser("download", help=f"download into the user cache ({cache_dir()})")
    d.add_argument("--data-dir", help="download into this directory instead of the user cache")
    d.add_argument("--force", action="store_true", help="download again even if files verify")
    d.set_defaults(func=_download)

    s = dsub.add_parser("show", help="save a labelled grid of random samples as an image")
    s.add_argument("--out", required=True, help="image file to write (.png, .svg, .pdf, ...)")
    s.add_argument("--split", choices=SPLITS, default="train", help="default: %(default)s")
    s.add_argument("--n", type=int, default=18, help="number of samples (default: %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="which samples (default: %(default)s)")
    s.add_argument("--data-dir", help=_DATA_DIR_HELP)
    s.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the published-checksum check (files of your own, same format)",
    )
    s.set_defaults(func=_show)

    e = dsub.add_parser(
        "export", help="write Fashion-MNIST as torchvision's raw layout, an image folder or .npz"
    )
    e.add_argument("directory", metavar="DIR", help="directory to write into")
    e.add_argument(
        "--format",
        required=True,
        choices=("torchvision", "folder", "npz"),
        help="torchvision: DIR/FashionMNIST/raw/ (IDX files); folder: "
        "DIR/fashion-mnist/{train,test}/<class>/<n>.png; npz: DIR/fashion-mnist.npz",
    )
    e.add_argument("--force", action="store_true", help="replace what is already there")
    e.add_argument("--data-dir", help=_DATA_DIR_HELP)
    e.set_defaults(func=_export)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _where(args: argparse.Namespace) -> int:
    found = locate(args.data_dir)
    lines = [f"Fashion-MNIST in {found.directory} (found via {found.how})"]
    lines += [f"  {path}  {_size(path.stat().st_size)}" for path in found.files.values()]
    # One write of the few lines (unbuffered or not): a reader that stops after the first
    # (``data where | head -1``) has them all already, so the command never meets a closed
    # pipe halfway, and its exit status does not depend on which process ran first.
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..data import dataset

    found = locate(args.data_dir)
    print(f"Verifying {found.directory} (found via {found.how})")
    failed: list[str] = []
    for split in SPLITS:
        stems = FILES[split]
        ok = True
        for stem, magic in zip(stems, (dataset.IMAGE_MAGIC, dataset.LABEL_MAGIC), strict=True):
            path = found.files[stem]
            try:
                item = dataset.read_file(path, stem, magic, verify=True, use_cache=False)
            except CorruptDataError as e:
                print(f"  FAIL  {e}")
                failed.append(path.name)
                ok = False
            else:
                print(f"  ok    {path}  sha256 {item.sha256[:16]}...")
        if not ok:
            continue
        try:
            ds = dataset.read_split(found, split, verify=True)
        except CorruptDataError as e:
            print(f"  FAIL  {e}")
            failed.append(f"{split} split")
            continue
        per_class = ds.labels.bincount(minlength=len(ds.classes)).tolist()
        spread = (
            f"{per_class[0]:,} per class"
            if len(set(per_class)) == 1
            else "per class " + ", ".join(f"{c:,}" for c in per_class)
        )
        print(f"  ok    {split}: {len(ds):,} images and labels, {spread}")
    if failed:
        raise CorruptDataError(
            f"{found.directory}: verification failed for {', '.join(failed)} (details above)"
        )
    print("All files verified.")
    return 0


def _download(args: argparse.Namespace) -> int:
    from ..data.download import download_dataset

    found = download_dataset(args.data_dir, force=args.force)
    print(f"Fashion-MNIST in {found.directory} ({found.how})")
    for path in found.files.values():
        print(f"  {path}  {_size(path.stat().st_size)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from ..data import dataset
    from ..data.preview import image_format, sample_grid, save_figure

    image_format(args.out)  # a bad --out fails before the data is read
    ds = dataset.load_fashion_mnist(args.split, args.data_dir, verify=not args.no_verify)
    out = save_figure(sample_grid(ds, args.n, seed=args.seed), args.out)
    print(f"wrote {out} ({args.n} {args.split} samples, seed {args.seed})")
    return 0


def _export(args: argparse.Namespace) -> int:
    import sys

    from ..data.export import export_fashion_mnist

    out = export_fashion_mnist(
        args.directory,
        args.format,
        data_dir=args.data_dir,
        force=args.force,
        progress=sys.stderr.isatty(),
    )
    how = {
        "torchvision": f"torchvision.datasets.FashionMNIST(root={str(out.parent)!r}) reads it",
        "folder": f"--data {out} reads it, as does ImageFolder({str(out / 'train')!r})",
        "npz": f"--data {out} or np.load({str(out)!r}) reads it",
    }[args.format]
    print(f"wrote {out} ({how})")
    return 0
