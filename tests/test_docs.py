"""The docs say what the code does (issue 20, defects 9 and 10): the README's adapt recipe is the
adapt preset's, and every pointer to the method spec names the file the repo has."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from vidistill.config import load_preset

ROOT = Path(__file__).resolve().parents[1]


def adapt_recipe_numbers(readme: str) -> dict[str, float]:
    """The numbers the README's 'Start from a pretrained encoder' section gives for the adapt preset."""
    text = " ".join(readme.split())
    found = {
        "adapt.layer_decay": re.search(r"layer-wise decay ([0-9.]+)", text),
        "optim.momentum_teacher": re.search(r"The teacher is an?[\w ]* EMA \(momentum ([0-9.]+)", text),
        "optim.teacher_temp": re.search(r"with a constant temperature ([0-9.]+)", text),
    }
    missing = [key for key, match in found.items() if match is None]
    assert not missing, f"README no longer states {missing}: update this test with the README"
    return {key: float(match.group(1)) for key, match in found.items()}


def test_the_readme_adapt_recipe_is_the_adapt_preset():
    preset = load_preset("adapt")
    stated = adapt_recipe_numbers((ROOT / "README.md").read_text())
    actual = {key: float(preset[key.split(".")[0]][key.split(".")[1]]) for key in stated}
    assert stated == actual


def test_every_pointer_to_the_method_spec_names_the_file_in_the_repo():
    assert (ROOT / "docs/METHOD.md").is_file()
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    dangling = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".yaml", ".sh", ".toml") or not path.is_file() or name == "docs/METHOD.md":
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if re.search(r"(?<![\w/])METHOD\.md", line):
                dangling.append(f"{name}:{n}")
    assert not dangling, f"pointers to the method spec without its folder (write docs/METHOD.md): {dangling}"
