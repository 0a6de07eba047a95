"""Code blocks of README.md (or a page of docs/), by the section they appear in, so that tests
run them as written."""

import re

from tests.conftest import ROOT


def block(section: str, language: str = "python", index: int = 0, page: str = "README.md") -> str:
    """The `index`-th ```language block of `## section` in `page` (relative to the repository)."""
    text = (ROOT / page).read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", body, re.S)[index]
