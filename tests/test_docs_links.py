"""README and docs never point outside the repository, every relative link resolves, and the
test command line CI parses stays as it is."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "deploy").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_links_stay_inside_the_repository():
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text, page
        for target in LINK.findall(text):
            if re.match(r"[a-z]+://|mailto:|#", target):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert REPO in path.parents or path == REPO, (page, target)
            assert path.exists(), (page, target)


def test_no_stale_lines_and_the_ci_command():
    readme = (REPO / "README.md").read_text()
    assert "    bash scripts/setup.sh && .venv/bin/python -m pytest\n" in readme
    for page in PAGES:
        text = page.read_text()
        assert "(to come)" not in text and "see the faces issue" not in text, page
    for guide in ("docs/kiosk.md", "docs/integration.md", "deploy/jetson/README.md"):
        assert f"]({guide})" in readme, guide
