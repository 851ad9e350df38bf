"""The README's Layout table matches the tree: every folder it names exists, every file or folder it names inside
a row exists there, and every top-level folder of the repository has a row."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NOT_LISTED = {"__pycache__", "var", "build", "dist"}  # generated, never in the repository


def top_level_folders() -> set[str]:
    """The repository's top-level folders: those holding a tracked file (an install's ``*.egg-info``, a venv or a
    cache is not the repository's); outside a git checkout, every folder but hidden and generated ones."""
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {
            p.name
            for p in ROOT.iterdir()
            if p.is_dir()
            and not p.name.startswith(".")
            and p.name not in NOT_LISTED
            and not p.name.endswith(".egg-info")
        }
    return {line.split("/", 1)[0] for line in tracked.splitlines() if "/" in line and not line.startswith(".")}


def layout_rows() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            rows[cells[0].strip("`").rstrip("/")] = cells[1]
    return rows


def test_every_row_names_an_existing_folder_and_existing_files_inside_it() -> None:
    rows = layout_rows()
    assert rows, "no Layout table found in README.md"
    missing = []
    for folder, what in rows.items():
        if not (ROOT / folder).is_dir():
            missing.append(f"{folder}/")
        for name in re.findall(r"`([^`\s()]+)`", what):
            if "/" in name or name.endswith(".py"):
                candidates = (ROOT / folder / name, ROOT / name)
                if not any(c.exists() for c in candidates):
                    missing.append(f"{folder}/{name}")
    assert not missing, f"README.md's Layout table names what is not in the tree: {missing}"


def test_every_top_level_folder_has_a_row() -> None:
    rows = layout_rows()
    unlisted = sorted(top_level_folders() - set(rows))
    assert not unlisted, f"top-level folders missing from README.md's Layout table: {unlisted}"
