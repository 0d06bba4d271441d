"""The docs in docs/*.md stay complete and linked: every public name of fastmp
and every public method of its main classes appears in the API reference, and
every relative link between the pages (and to README.md) resolves, anchors
included.  Pure text checks: no processes, well under a second."""

import inspect
import re
import unicodedata
from pathlib import Path

import pytest

import fastmp
from fastmp._broadcast import Subscriber
from fastmp.connection import Connection

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Mirrors the checkout: skip (rather than fail) where tests run without the docs,
# e.g. a wheel's test run that copied only some directories.
pytestmark = pytest.mark.skipif(not (DOCS / "api.md").exists(), reason="docs/ not present")

PAGES = ["index.md", "api.md", "migrating-from-multiprocessing.md",
         "migrating-from-faster-fifo.md", "guarantees.md", "platforms.md"]


def read(name):
    return (DOCS / name).read_text(encoding="utf-8")


def code_spans(text):
    """Everything written as code: `inline` spans and fenced blocks."""
    spans = re.findall(r"`([^`\n]+)`", text)
    spans += re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    return "\n".join(spans)


def test_pages_exist():
    for name in PAGES:
        assert (DOCS / name).is_file(), name


@pytest.mark.parametrize("name", sorted(fastmp.__all__))
def test_every_public_name_in_api_reference(name):
    assert re.search(rf"\b{re.escape(name)}\b", code_spans(read("api.md"))), (
        f"fastmp.{name} is not documented in docs/api.md")


def public_members(cls):
    return sorted(n for n, _ in inspect.getmembers(cls) if not n.startswith("_"))


@pytest.mark.parametrize("cls", [fastmp.Queue, fastmp.JoinableQueue, fastmp.SimpleQueue, Connection,
                                 fastmp.Ring, fastmp.Broadcast, Subscriber, fastmp.FloatChannel,
                                 fastmp.Lock, fastmp.RLock],
                         ids=lambda c: c.__name__)
def test_every_public_method_in_api_reference(cls):
    spans = code_spans(read("api.md"))
    missing = [n for n in public_members(cls) if not re.search(rf"\b{re.escape(n)}\b", spans)]
    assert not missing, f"{cls.__name__} members missing from docs/api.md: {missing}"


def test_reexported_names_are_listed_as_reexported():
    """The list of names re-exported unchanged is computed, not guessed: each
    name of fastmp.__all__ that is multiprocessing's own object has a row in
    the re-exported table, and no name fastmp implements does."""
    import multiprocessing
    text = read("api.md")
    section = text[text.index("## Re-exported from multiprocessing"):]
    rows = set(re.findall(r"^\| `([A-Za-z_]+)` \|", section, flags=re.M))
    reexported = {n for n in fastmp.__all__
                  if getattr(fastmp, n) is getattr(multiprocessing, n, object())}
    assert rows == reexported


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]", lambda m: "_" if m.group() == "_" else "", heading.strip().lower())
    text = "".join(c for c in text
                   if c in "-_ " or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path):
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_slug_matches_github():
    assert slug("Differences from multiprocessing") == "differences-from-multiprocessing"
    assert slug("get_context and the contexts") == "get_context-and-the-contexts"
    assert slug("Value, Array, RawValue, RawArray") == "value-array-rawvalue-rawarray"
    assert slug("Ring: typed frames, zero copy") == "ring-typed-frames-zero-copy"


@pytest.mark.parametrize("name", PAGES)
def test_relative_links_resolve(name):
    text = read(name)
    text = re.sub(r"```.*?```", "", text, flags=re.S)   # links in code blocks are not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):                 # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (DOCS / path).resolve() if path else DOCS / name
        if not file.is_file():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"broken links in docs/{name}: {broken}"
