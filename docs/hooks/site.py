"""MkDocs hook: the pages that are made from something else, so nothing is written twice.

- ``index.md`` is README.md and ``benchmarks.md`` is BENCHMARKS.md (both stay at the root of
  the repository, where GitHub shows them and where the benchmark tools name them); their
  links, written relative to the root, are rewritten for the site.
- ``cli.md``'s ``<!-- cli-reference -->`` line is replaced by every command and option of
  ``softmax_regression.cli.build_parser()``, so the page says what ``--help`` says.
- In every page, a link to ``../BENCHMARKS.md`` or ``../README.md`` (what works on GitHub)
  becomes a link to the page that shows that file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Pages whose text is a file at the repository root.
INCLUDED = {"index.md": "README.md", "benchmarks.md": "BENCHMARKS.md"}
CLI_MARKER = "<!-- cli-reference -->"

_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def _root_link(target: str) -> str:
    """A link written in a root file (README.md, BENCHMARKS.md), as a docs page sees it."""
    if re.match(r"[a-z]+:|#", target):
        return target
    path, sep, anchor = target.partition("#")
    if path.startswith("docs/"):
        path = path[len("docs/") :]
    elif path in INCLUDED.values():
        path = next(page for page, file in INCLUDED.items() if file == path)
    return path + sep + anchor


def _docs_link(target: str) -> str:
    """A link in a docs page to a root file that the site shows as a page."""
    path, sep, anchor = target.partition("#")
    for page, file in INCLUDED.items():
        if path == f"../{file}":
            return page + sep + anchor
    return target


def on_page_markdown(markdown: str, page, config, files) -> str:
    src = page.file.src_uri
    if src in INCLUDED:
        text = (ROOT / INCLUDED[src]).read_text(encoding="utf-8")
        return _LINK.sub(lambda m: m[1] + _root_link(m[2]) + m[3], text)
    if src == "cli.md":
        if CLI_MARKER not in markdown:
            raise ValueError(f"cli.md lost its {CLI_MARKER} line")
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return _LINK.sub(lambda m: m[1] + _docs_link(m[2]) + m[3], markdown)


def on_serve(server, config, builder):
    for name in (*INCLUDED.values(), "src/softmax_regression/cli"):
        server.watch(str(ROOT / name))
    return server


# ---------------------------------------------------------------------------------------------
# The command line's reference


def cli_reference() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    try:
        from softmax_regression.cli import build_parser
    finally:
        sys.path.pop(0)
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "96"  # the usage lines' width, whatever the terminal's
    try:
        parser = build_parser()
        sections = list(_sections(parser, parser.prog, level=2))
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    # Defaults that name this machine's home directory are shown as ~.
    text = "\n".join(sections)
    home = str(Path.home())
    return text.replace(home + "/", "~/") if home != "/" else text


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name), sub


def _sections(parser: argparse.ArgumentParser, prog: str, level: int):
    subs = list(_subcommands(parser))
    yield f"{'#' * level} `{prog}`\n"
    if parser.description:
        yield _escape(parser.description) + "\n"
    yield "```text\n" + parser.format_usage().strip() + "\n```\n"
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(
            action, argparse._SubParsersAction | argparse._HelpAction
        ):
            continue
        rows.append(_row(action, formatter))
    if subs:
        rows += [(f"`{name}`", _escape(help or "")) for name, help, _ in subs]
    if rows:
        yield "| argument | what it does |\n|---|---|"
        yield "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"
    for name, _help, sub in subs:
        yield from _sections(sub, f"{prog} {name}", level + 1)


def _row(action: argparse.Action, formatter: argparse.HelpFormatter) -> tuple[str, str]:
    if action.option_strings:
        metavar = ""
        if action.nargs != 0:
            default = formatter._get_default_metavar_for_optional(action)
            metavar = " " + formatter._format_args(action, default)
        flags = ", ".join(f"`{flag}{metavar}`" for flag in action.option_strings)
    else:
        default = formatter._get_default_metavar_for_positional(action)
        flags = f"`{formatter._format_args(action, default)}`"
    text = formatter._expand_help(action) if action.help else ""
    if action.choices is not None and action.metavar is not None:  # else the usage shows them
        listed = ", ".join(str(c) for c in action.choices)
        if listed not in text:
            text += f" (one of {listed})"
    return flags, _escape(text)


def _escape(text: str) -> str:
    text = " ".join(text.split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", text)
