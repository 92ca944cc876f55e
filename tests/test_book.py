"""The chapters' papermill parameters use the names of the command line (one set of names)."""
import ast
from pathlib import Path

import nbformat
import pytest

from gpvae.cli import build_parser

from .conftest import REPO

FOLDERS = {"runs_dir", "results_dir"}  # where a chapter keeps its runs or reads results: not run options
CHAPTERS = sorted((REPO / "book").glob("*.ipynb"))


def cli_option_names() -> set[str]:
    names = set()
    for action in build_parser()._subparsers._group_actions[0].choices.values():  # train, evaluate, bench
        names |= {a.dest for a in action._actions if a.option_strings}
    return names


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: Path(p).stem)
def test_one_parameters_cell_of_plain_literals_named_like_cli_options(chapter):
    cells = [c for c in nbformat.read(chapter, 4).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{chapter.name}: {len(cells)} cells tagged 'parameters'"
    statements = ast.parse(cells[0].source).body
    assert all(isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant) for s in statements), \
        f"{chapter.name}: parameters must be plain literals"
    names = {s.targets[0].id for s in statements}
    unknown = names - cli_option_names() - FOLDERS
    assert not unknown, f"{chapter.name}: parameters {sorted(unknown)} are not options of python -m gpvae"
