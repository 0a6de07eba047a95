"""Code blocks of README.md, by the section they appear in, so that tests run them as written."""

import re

from tests.conftest import ROOT


def block(section: str, language: str = "python", index: int = 0) -> str:
    """The `index`-th ```language block of README.md's `## section`."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", body, re.S)[index]
