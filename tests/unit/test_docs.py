"""The documentation stays true to the repository: README.md and docs/*.md link only to
files and headings that exist, name only paths that exist, `make` targets the Makefile has
and `paysys` subcommands the console script has; and README stays short."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 250

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.MULTILINE)


def doc_ids():
    return [str(path.relative_to(ROOT)) for path in DOCS]


def code_of(text):
    """The text of every fenced block and inline code span: where commands are written."""
    blocks = FENCE.findall(text)
    prose = FENCE.sub("", text)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", lambda m: "_" if m.group() == "_" else "", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    return {slug(heading) for heading in HEADING.findall(FENCE.sub("", path.read_text()))}


def top_level_dirs():
    """The repository's own top-level directories (tracked), whose paths the docs name."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    return sorted({line.split("/", 1)[0] for line in listed.stdout.splitlines() if "/" in line})


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, "README.md has {} lines; move detail to docs/".format(lines)


def test_the_docs_exist_and_the_readme_maps_each():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(DOCS) > 1
    unmapped = [path.name for path in DOCS[1:] if "(docs/{})".format(path.name) not in readme]
    assert unmapped == []


@pytest.mark.parametrize("path", DOCS, ids=doc_ids())
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(path):
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("path", DOCS, ids=doc_ids())
def test_every_repository_path_named_exists(path):
    text = path.read_text(encoding="utf-8")
    roots = "|".join(re.escape(name) for name in top_level_dirs())
    named = re.findall(r"(?<![\w./*-])((?:{})/[\w./*-]*)".format(roots), text)
    missing = []
    for name in set(named):
        name = name.rstrip(".")
        found = list(ROOT.glob(name.rstrip("/"))) if "*" in name else [ROOT / name]
        if not found or not all(match.exists() for match in found):
            missing.append(name)
    assert sorted(missing) == []


def makefile_targets():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", makefile, re.MULTILINE))


@pytest.mark.parametrize("path", DOCS, ids=doc_ids())
def test_every_make_target_named_is_in_the_makefile(path):
    named = set()
    for code in code_of(path.read_text(encoding="utf-8")):
        for line in code.splitlines():
            if "apt-get" not in line:  # there `make` is a package
                named.update(re.findall(r"(?:^|(?<=[\s(;&|]))make ([a-z][\w-]*)", line))
    assert sorted(named - makefile_targets()) == []


def paysys_subcommands():
    script = Path(sys.executable).parent / "paysys"
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    return set(re.findall(r"^    ([a-z][\w-]*)", shown.stdout, re.MULTILINE))


@pytest.mark.parametrize("path", DOCS, ids=doc_ids())
def test_every_paysys_subcommand_named_exists(path):
    named = set()
    for code in code_of(path.read_text(encoding="utf-8")):
        for match in re.finditer(r"(?:^|(?<=[\s/(]))paysys ([a-z][\w-]*)", code):
            # `kubectl -n paysys …` names a namespace, not the console script.
            if not code[:match.start()].endswith(("-n ", "--namespace ")):
                named.add(match.group(1))
    assert sorted(named - paysys_subcommands()) == []
