"""Set where the course is published and rewrite every notebook's Colab badge and Colab cell from it.

    python scripts/set_course_address.py my-lab/dpcn-lite            # published on GitHub (branch main)
    python scripts/set_course_address.py my-lab/dpcn-lite --branch v1
    python scripts/set_course_address.py --unpublished                # no badge; Colab installs an uploaded wheel
    python scripts/set_course_address.py                              # rewrite from the current setting

The setting lives in ``dpcn_lite/data/course_address.json`` (it ships with the package). The badge sits on the line
after each notebook's title; the Colab cell is the one tagged ``colab``. Student copies are rewritten too. Neither
cell has outputs, so no notebook needs a refresh. ``tests/test_notebook_hygiene.py`` fails while any notebook
disagrees with the setting.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from make_student_copies import course_notebooks, write_student_copies  # noqa: E402

from dpcn_lite.course import (  # noqa: E402
    ADDRESS_FILE,
    CourseAddress,
    colab_badge_markdown,
    colab_cell_source,
    course_address,
)

BADGE_LINE_RE = re.compile(r"^\[!\[Open In Colab\]\(.*\)\]\(.*\)\s*$")


def opening_with_badge(opening: str, filename: str, address: CourseAddress) -> str:
    """The first cell's text with the badge for ``address`` on the line after the title (or without any badge)."""
    lines = opening.split("\n")
    title, rest = lines[0], lines[1:]
    rest = [line for line in rest if not BADGE_LINE_RE.match(line)]
    while rest and not rest[0].strip():
        rest.pop(0)
    badge = colab_badge_markdown(filename, address=address)
    return "\n".join([title, "", *([badge, ""] if badge else []), *rest])


def rewrite_notebook(nb: nbformat.NotebookNode, filename: str, address: CourseAddress) -> bool:
    """Rewrite ``nb``'s badge and Colab cell in place; True when anything changed."""
    changed = False
    opening = opening_with_badge(nb.cells[0].source, filename, address)
    if opening != nb.cells[0].source:
        nb.cells[0].source, changed = opening, True
    for cell in nb.cells:
        if cell.cell_type == "code" and "colab" in cell.get("metadata", {}).get("tags", []):
            source = colab_cell_source(address)
            if cell.source != source:
                cell.source, changed = source, True
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", nargs="?", help="OWNER/NAME on GitHub")
    parser.add_argument("--branch", default=None, help="branch the badges open (default: main, or the current one)")
    parser.add_argument("--unpublished", action="store_true", help="no public address: no badges, wheel upload")
    args = parser.parse_args(argv)
    if args.repository and args.unpublished:
        parser.error("give OWNER/NAME or --unpublished, not both")
    current = course_address()
    repository = None if args.unpublished else (args.repository or current.repository)
    try:
        address = CourseAddress(repository=repository, branch=args.branch or current.branch)
    except ValueError as error:
        parser.error(str(error))
    ADDRESS_FILE.write_text(json.dumps({"repository": address.repository, "branch": address.branch}) + "\n",
                            encoding="utf-8")
    changed = []
    for path in course_notebooks():
        nb = nbformat.read(path, as_version=4)
        if rewrite_notebook(nb, path.name, address):
            nbformat.write(nb, path)
            changed.append(path.name)
    write_student_copies()
    where = address.repository and f"github.com/{address.repository} ({address.branch})" or "unpublished"
    print(f"course address: {where}; rewrote {len(changed)} notebooks" + (f": {', '.join(changed)}" if changed else ""))


if __name__ == "__main__":
    main()
