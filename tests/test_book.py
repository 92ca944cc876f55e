"""The chapters' papermill parameters use the names of the command line (one set of names)."""
import ast
import json
from pathlib import Path

import nbformat
import pytest

from gpvae.cli import build_parser

from .conftest import REPO, requires_data

FOLDERS = {"runs_dir", "results_dir"}  # where a chapter keeps its runs or reads results: not run options
# "options": any further train option by its CLI name (a dict); "profile": which workflow profile's records
NOT_OPTIONS = FOLDERS | {"options", "profile"}
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
    assert all(isinstance(s, ast.Assign) for s in statements), f"{chapter.name}: parameters must be assignments"
    for statement in statements:
        ast.literal_eval(statement.value)  # raises for anything but a plain literal
    names = {s.targets[0].id for s in statements}
    unknown = names - cli_option_names() - NOT_OPTIONS
    assert not unknown, f"{chapter.name}: parameters {sorted(unknown)} are not options of python -m gpvae"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: Path(p).stem)
def test_every_cell_has_a_unique_id(chapter):
    """nbformat 4.5 cells carry ids (nbval and the book read them; a missing one is a warning today, an
    error in later nbformat versions)."""
    notebook = json.loads(chapter.read_text())
    ids = [cell.get("id") for cell in notebook["cells"]]
    assert None not in ids, f"{chapter.name}: cells {[i for i, x in enumerate(ids) if x is None]} have no id"
    assert len(set(ids)) == len(ids), f"{chapter.name}: repeated cell ids"


RESULT_CHAPTERS = ("results", "converged", "appendix_runs")  # pages of records: the reader comes for the numbers


@pytest.mark.parametrize("chapter", RESULT_CHAPTERS)
def test_a_results_chapter_folds_its_code(chapter):
    """A chapter that renders records shows tables, figures and verdicts; its code (calls of gpvae.pages) is
    folded (``hide-input``) or removed, the parameters cell aside."""
    cells = nbformat.read(REPO / "book" / f"{chapter}.ipynb", 4).cells
    shown = [i for i, cell in enumerate(cells) if cell.cell_type == "code" and not
             {"hide-input", "remove-input", "hide-cell", "remove-cell", "parameters"} & set(cell.metadata.get("tags", []))]
    assert not shown, f"{chapter}.ipynb: code cells {shown} are shown unfolded"


@requires_data
def test_training_chapter_refuses_an_unknown_option(tmp_path):
    """``options`` takes train options by their CLI names; a typo fails loudly instead of being ignored."""
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match="unknown options"):
        papermill.execute_notebook(str(REPO / "book" / "training.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"model": "vae", "max_train": 100, "runs_dir": str(tmp_path),
                                               "options": {"no_such_option": 1}}, progress_bar=False)


def test_a_chapter_scale_fills_only_the_values_left_none(monkeypatch):
    from gpvae.config import chapter_scale

    namespace = {"epochs": None, "eval_k": 7}
    monkeypatch.setenv("GPVAE_SMOKE", "1")
    assert chapter_scale(namespace, smoke=dict(epochs=2, eval_k=100), full=dict(epochs=200, eval_k=5000)) == "smoke"
    assert namespace == {"epochs": 2, "eval_k": 7}  # papermill's value stays
    monkeypatch.setenv("GPVAE_SMOKE", "0")
    namespace = {"epochs": None, "eval_k": None}
    assert chapter_scale(namespace, smoke=dict(epochs=2, eval_k=100), full=dict(epochs=200, eval_k=5000)) == "full"
    assert namespace == {"epochs": 200, "eval_k": 5000}
    with pytest.raises(ValueError, match="different values"):
        chapter_scale({}, smoke=dict(epochs=2), full=dict(eval_k=1))
