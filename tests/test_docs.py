"""The documentation: the site builds offline with ``mkdocs build --strict``, and every Python
and shell block of README.md and docs/ runs, with the outputs the pages show compared.

How a page marks its blocks (Sybil parses them; each block is one test, ``README.md:42``):

- ```` ```python ````: run, in one namespace per page, in that page's own temporary directory.
  A block that starts with ``>>>`` is a doctest: its outputs are compared (``...`` matches
  anything, whitespace is normalised).
- ```` ```sh ````: run by bash (``set -euo pipefail``) in the page's temporary directory, with
  this virtualenv's ``softmax-regression`` and ``torchrun`` first on PATH. Blocks of a page
  share the directory: a run trained in one block is there for the next.
- ``<!-- shorten: train --epochs 1 -->`` right before a shell block: every ``train`` command
  of that block (``softmax-regression train ...`` or ``torchrun ... -m softmax_regression
  train ...``) gets ``--epochs 1`` appended (the last value of an option wins).
  ``train --epochs 1; sweep --epochs 1`` shortens two commands.
- ``<!-- output -->`` right before a ```` ```text ```` block: it is the output of the block
  just above (a shell block's stdout and stderr together; what a Python block printed),
  compared as a doctest is (``...`` matches anything, such as times and run names).
- ``<!-- invisible-code-block: python ... -->`` (Sybil's own): Python run in the page's
  namespace and directory but shown nowhere, to make the files an example needs.
- ```` ```console ````: not run, an illustration of a command; it must follow
  ``<!-- not run: REASON -->``, and shows in the test report as skipped with that reason.
- ```` ```text ```` (and json, toml, yaml, html) without a directive: an illustration, not run.

Any other fence (no language, ``bash``, ``py``, ...) is an error, so that nothing meant to run
is quietly left out.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from sybil import Document, Example
from sybil.parsers.markdown import PythonCodeBlockParser
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

RUN = {"python", "sh"}
ILLUSTRATION = {"text", "console", "json", "toml", "yaml", "html"}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

_DIRECTIVE = re.compile(
    r"<!--\s*(?P<name>shorten|output|not run)\s*(?::\s*(?P<args>.*?))?\s*-->\s*\Z", re.DOTALL
)


class MarkError(AssertionError):
    """A block marked in a way these rules do not allow."""


def _directive(text: str, start: int) -> re.Match[str] | None:
    """The HTML comment that ends right before position ``start`` (blank lines allowed)."""
    head = text[:start].rstrip()
    begin = head.rfind("<!--")
    return _DIRECTIVE.match(head, begin) if begin >= 0 else None


def _output_of(example: Example) -> str:
    return example.namespace.get("__output__", "")


# ---------------------------------------------------------------------------------------------
# Evaluators


def _shorten_prelude(spec: str) -> str:
    """bash functions that append the declared options to the named commands."""
    cases = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        command, _, extra = part.partition(" ")
        if not extra.strip():
            raise MarkError(f"shorten: {part!r} names no option to append")
        cases.append(f"{shlex.quote(command)}) echo {shlex.quote(extra.strip())} ;;")
    return (
        '__extra() { case "${1-}" in ' + " ".join(cases) + " *) ;; esac; }\n"
        'softmax-regression() { command softmax-regression "$@" $(__extra "${1-}"); }\n'
        "torchrun() { local sub='' prev=''; for a in \"$@\"; do\n"
        '  [ "$prev" = softmax_regression ] && sub=$a; prev=$a; done\n'
        '  command torchrun "$@" $(__extra "$sub"); }\n'
    )


class Shell:
    def __init__(self, shorten: str | None) -> None:
        self.shorten = shorten

    def __call__(self, example: Example) -> None:
        __tracebackhide__ = True
        prelude = _shorten_prelude(self.shorten) if self.shorten else ""
        script = "set -euo pipefail\n" + prelude + example.parsed
        page_dir = example.namespace["__page_dir__"]
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        env["MPLBACKEND"] = "Agg"
        env.pop("COLUMNS", None)
        proc = subprocess.run(
            ["bash", "-c", script],
            cwd=page_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
        example.namespace["__output__"] = proc.stdout
        if proc.returncode != 0:
            raise AssertionError(
                f"{example.path}, line {example.line}: the block exited with status "
                f"{proc.returncode}:\n{proc.stdout}"
            )


def _compare_output(example: Example) -> str | None:
    want, got = example.parsed, _output_of(example)
    checker = doctest.OutputChecker()
    if checker.check_output(want, got, FLAGS):
        return None
    fake = doctest.Example("", want)
    return checker.output_difference(fake, got, FLAGS)


class NotRun:
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, example: Example) -> None:
        pytest.skip(f"not run: {self.reason}")


class Invalid:
    def __init__(self, message: str) -> None:
        self.message = message

    def __call__(self, example: Example) -> None:
        raise MarkError(f"{example.path}, line {example.line}: {self.message}")


# ---------------------------------------------------------------------------------------------
# The parser for every fence that is not Python


class FenceParser:
    lexer = RawFencedCodeBlockLexer(
        info_pattern=re.compile(r"(?P<info>[^\n]*)$\n", re.MULTILINE),
        mapping={"info": "info", "source": "source"},
    )

    def __call__(self, document: Document):
        previous_run: str | None = None  # the language of the last block, when it ran
        for region in self.lexer(document):
            info = region.lexemes["info"].strip()
            lang = info.split()[0] if info else ""
            source = region.lexemes["source"]
            found = _directive(document.text, region.start)
            name = found["name"] if found else None
            args = (found["args"] or "").strip() if found else ""
            evaluator = None
            if info != lang:
                evaluator = Invalid(f"fence {info!r}: write only the language")
            elif lang == "python":
                if name:
                    evaluator = Invalid(f"<!-- {name} --> does not apply to a python block")
                previous_run = "python"
                if evaluator is None:
                    continue  # PythonCodeBlockParser runs it
            elif lang == "sh":
                if name not in (None, "shorten"):
                    evaluator = Invalid(f"<!-- {name} --> does not apply to a shell block")
                else:
                    evaluator = Shell(args if name == "shorten" else None)
                previous_run = "sh" if name is None else "shortened sh"
            elif name == "output":
                if lang != "text":
                    evaluator = Invalid("an <!-- output --> block is ```text")
                elif previous_run not in ("sh", "python"):
                    evaluator = Invalid(
                        "<!-- output --> follows a python or shell block that is not shortened"
                        f" (the block above is {previous_run or 'none'})"
                    )
                else:
                    region.parsed = source
                    region.evaluator = _compare_output
                    yield region
                    previous_run = None
                    continue
            elif lang == "console":
                if name == "not run" and args:
                    evaluator = NotRun(args)
                else:
                    evaluator = Invalid("a ```console block follows <!-- not run: REASON -->")
                previous_run = None
            elif lang in ILLUSTRATION:
                if name:
                    evaluator = Invalid(f"<!-- {name} --> does not apply to a ```{lang} block")
                else:
                    continue
            else:
                evaluator = Invalid(
                    f"fence language {lang or '(none)'!r}: use python or sh (run), console "
                    f"(not run, with a reason) or one of {sorted(ILLUSTRATION - {'console'})}"
                )
            region.parsed = source
            region.evaluator = evaluator
            yield region


class PythonParser(PythonCodeBlockParser):
    """Sybil's Python blocks and doctests; a plain block's printed output is kept for an
    ``<!-- output -->`` block that follows it."""

    def __init__(self) -> None:
        super().__init__(doctest_optionflags=FLAGS)
        run = self.codeblock_parser._evaluator

        def evaluate(example: Example) -> None:
            __tracebackhide__ = True
            buffer = io.StringIO()
            try:
                with contextlib.redirect_stdout(buffer):
                    run(example)
            finally:
                example.namespace["__output__"] = buffer.getvalue()
                sys.stdout.write(buffer.getvalue())

        self.codeblock_parser._evaluator = evaluate


PARSERS = [PythonParser(), FenceParser()]


# ---------------------------------------------------------------------------------------------
# One test per block, in page order


class Page:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.document = Document.parse(str(path), *PARSERS)
        self.examples = list(self.document)
        self.done = 0
        self.failed_at: int | None = None
        self.failed_at_line = 0

    def run(self, index: int, tmp_path_factory: pytest.TempPathFactory) -> None:
        __tracebackhide__ = True
        ns = self.document.namespace
        if "__page_dir__" not in ns:
            slug = re.sub(r"\W+", "-", str(self.path.relative_to(ROOT)))
            ns["__page_dir__"] = tmp_path_factory.mktemp(slug)
            ns["__name__"] = f"docs:{self.path.name}"
        if self.failed_at is not None and self.failed_at < index:
            pytest.fail(f"an earlier block of this page failed (line {self.failed_at_line})")
        while self.done <= index:  # earlier blocks first, when selected alone
            example = self.examples[self.done]
            self.done += 1
            try:
                _evaluate_in(example, ns["__page_dir__"])
            except pytest.skip.Exception:
                if self.done - 1 == index:
                    raise
            except BaseException:
                self.failed_at, self.failed_at_line = self.done - 1, example.line
                raise


def _evaluate_in(example: Example, directory: Path) -> None:
    __tracebackhide__ = True
    old = Path.cwd()
    os.chdir(directory)
    try:
        example.evaluate()
    finally:
        os.chdir(old)


_PAGES = {path: Page(path) for path in PAGES}
_BLOCKS = [(page, i) for page in _PAGES.values() for i in range(len(page.examples))]


@pytest.mark.parametrize(
    ("page", "index"),
    _BLOCKS,
    ids=[f"{p.path.relative_to(ROOT)}:{p.examples[i].line}" for p, i in _BLOCKS],
)
def test_block(page: Page, index: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    page.run(index, tmp_path_factory)


# ---------------------------------------------------------------------------------------------
# The site


def test_site_builds_offline(tmp_path: Path) -> None:
    """``mkdocs build --strict``: no broken link, anchor, reference or nav entry; and nothing
    in the built pages is fetched from elsewhere (fonts, scripts, styles, images)."""
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [str(VENV_BIN / "mkdocs"), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    remote = re.compile(
        r"<(?:link|script|img|iframe|source)\b[^>]*\b(?:href|src)=\"(?:https?:)?//[^\"]+\""
        r"|url\(\s*['\"]?(?:https?:)?//|@import\s+['\"]?(?:https?:)?//"
    )
    fetched = {
        f"{path.relative_to(site)}: {m[0]}"
        for path in site.rglob("*")
        if path.suffix in {".html", ".css", ".js"}
        for m in remote.finditer(path.read_text(encoding="utf-8", errors="replace"))
    }
    assert not fetched, sorted(fetched)[:10]
    for page in ("index.html", "cli/index.html", "benchmarks/index.html", "api/d2l/index.html"):
        assert (site / page).is_file(), page
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    assert "--epochs" in cli and "softmax-regression data verify" in cli


def _public_modules() -> list[str]:
    """Every module of the package that declares ``__all__``, by its dotted name."""
    src = ROOT / "src"
    names = []
    for path in sorted((src / "softmax_regression").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        if re.search(r"^__all__\s*[:=]", path.read_text(encoding="utf-8"), re.MULTILINE):
            names.append(".".join(parts))
    return names


def test_every_public_module_has_an_api_page() -> None:
    documented = set()
    for path in (ROOT / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: (\S+)", path.read_text(encoding="utf-8"), re.M))
    missing = [name for name in _public_modules() if name not in documented]
    assert not missing, f"add docs/api/<name>.md with '::: <module>' (and a nav entry): {missing}"
