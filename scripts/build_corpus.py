"""Builds experiments/data/stdlib_docstrings.txt: the toy-text corpus of the language-model task, the
docstrings of a fixed list of CPython standard-library modules (PSF licence), in a fixed order, ASCII
only, dedented. Run once; the file is committed and its SHA-256 pinned in experiments/corpus.py, so every
machine trains on the same text whatever its Python (a different CPython gives different docstrings, and
the loader refuses a file whose checksum differs).

    python scripts/build_corpus.py   # with CPython 3.11
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

MODULES = (
    "abc argparse ast base64 bisect calendar cmd codecs collections colorsys configparser contextlib copy csv "
    "dataclasses datetime decimal difflib dis email.message enum fileinput fnmatch fractions ftplib functools "
    "getopt gettext glob gzip hashlib heapq hmac html.parser http.client imaplib inspect io ipaddress itertools "
    "json logging lzma mailbox mimetypes netrc numbers operator optparse os pathlib pickle pkgutil platform "
    "plistlib poplib pprint queue quopri random re reprlib sched secrets selectors shelve shlex shutil smtplib "
    "socket socketserver statistics string struct subprocess tarfile tempfile textwrap threading timeit token "
    "tokenize trace traceback turtle types typing unittest urllib.parse urllib.request uuid warnings wave "
    "weakref xml.dom.minidom zipfile zipimport"
).split()


def docstrings(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    texts = [inspect.getdoc(module) or ""]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            texts.append(inspect.getdoc(obj) or "")
            if inspect.isclass(obj):
                for _, member in sorted(vars(obj).items()):
                    if inspect.isfunction(member) and not member.__name__.startswith("_"):
                        texts.append(inspect.getdoc(member) or "")
    return [t.strip() for t in texts if t and t.strip() and t.isascii()]


def main() -> int:
    if sys.version_info[:2] != (3, 11):
        print("error: build the corpus with CPython 3.11 (its docstrings are the pinned text)", file=sys.stderr)
        return 2
    parts = []
    for name in MODULES:
        parts.append(f"# {name}\n\n" + "\n\n".join(docstrings(name)))
    out = Path(__file__).resolve().parents[1] / "experiments" / "data" / "stdlib_docstrings.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n\n".join(parts) + "\n", encoding="ascii")
    print(f"{out}: {out.stat().st_size} bytes from {len(MODULES)} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
