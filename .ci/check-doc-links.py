#!/usr/bin/env python3
"""Checks the relative links between the project's Markdown pages.

Usage: python3 .ci/check-doc-links.py [FILE.md ...]   (from anywhere; default: the pages below)

Every link `[text](target)` outside code in README.md, SECURITY.md, CHANGELOG.md,
deploy/RUNBOOK.md and docs/*.md whose target is not a URL must name a file or directory
that exists, and its `#anchor`, when the target is a Markdown page (or the page itself),
must be a heading of that page (GitHub's slug rules, duplicates numbered -1, -2, ...) or an
explicit `<a id="...">`. Prints one line per broken link (file:line: link: why) and exits 1
if there is any, 0 otherwise. Standard library only.
"""

import glob
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DEFAULT_PAGES = ["README.md", "SECURITY.md", "CHANGELOG.md", "deploy/RUNBOOK.md"]

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) or ![alt](target); the text may hold one level of brackets.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def prose_lines(path):
    """(line number, text) of the lines outside fenced code blocks."""
    with open(path, encoding="utf-8") as f:
        in_fence = False
        for n, line in enumerate(f, 1):
            if FENCE.match(line):
                in_fence = not in_fence
                continue
            if not in_fence:
                yield n, line.rstrip("\n")


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


_anchors = {}


def anchors(path):
    if path not in _anchors:
        found, seen = set(), {}
        for _, line in prose_lines(path):
            for a in EXPLICIT_ANCHOR.findall(line):
                found.add(a)
            m = HEADING.match(line)
            if m:
                base = slug(m.group(2))
                k = seen.get(base, 0)
                seen[base] = k + 1
                found.add(base if k == 0 else f"{base}-{k}")
        _anchors[path] = found
    return _anchors[path]


def check(page):
    problems = []
    here = os.path.dirname(page)
    for n, line in prose_lines(page):
        for target in LINK.findall(CODE_SPAN.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(here, path)) if path else page
            where = f"{os.path.relpath(page, ROOT)}:{n}: ({target})"
            if not os.path.exists(dest):
                problems.append(f"{where}: {os.path.relpath(dest, ROOT)} does not exist")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                problems.append(f"{where}: no heading or <a id> `{anchor}` in {os.path.relpath(dest, ROOT)}")
    return problems


def main(args):
    pages = [os.path.abspath(p) for p in args] or [
        os.path.join(ROOT, p) for p in DEFAULT_PAGES
    ] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    problems = []
    for page in pages:
        if not os.path.exists(page):
            problems.append(f"{os.path.relpath(page, ROOT)}: the page itself is missing")
            continue
        problems += check(page)
    for p in problems:
        print(p)
    print(f"{len(pages)} pages checked, {len(problems)} broken links")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
