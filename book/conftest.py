"""Each chapter executes once in ``make test``: nbval runs it cell by cell for the tests, and with
``--chapter-cache DIR`` every chapter whose cells all passed is stored, with the outputs nbval received, in
the jupyter-cache at DIR that the book build reads (``execute_notebooks: cache`` in ``_config.yml``), which
then renders those outputs instead of executing the chapter a second time. Under pytest-xdist each worker
stages its chapters in ``DIR/staged`` and the controller stores them (one writer for the cache's database)."""
from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import nbformat

_started: dict[str, float] = {}
_finished: dict[str, float] = {}
_failed: set[str] = set()


def pytest_addoption(parser):
    parser.addoption("--chapter-cache", default=None, metavar="DIR",
                     help="store every chapter nbval executed without a failure in the jupyter-cache at DIR")


def pytest_runtest_logstart(nodeid, location):
    _started.setdefault(nodeid.split("::")[0], time.perf_counter())


def pytest_runtest_logreport(report):
    _finished[report.nodeid.split("::")[0]] = time.perf_counter()
    if report.failed or report.skipped:
        _failed.add(report.nodeid.split("::")[0])


def _stage(session, staged: Path) -> None:
    """Write every chapter this process executed without a failure, with its outputs, to ``staged``."""
    chapters: dict[object, list] = {}
    for item in session.items:
        if hasattr(item, "test_outputs"):  # an nbval cell
            chapters.setdefault(item.parent, []).append(item)
    for chapter, cells in chapters.items():
        if chapter.nodeid in _failed or any(cell.test_outputs is None for cell in cells):
            continue  # the book build executes it itself
        notebook, position = copy.deepcopy(chapter.nb), {id(cell): i for i, cell in enumerate(chapter.nb.cells)}
        for count, cell in enumerate(cells, start=1):
            executed = notebook.cells[position[id(cell.cell)]]
            executed.outputs, executed.execution_count = cell.test_outputs, count
        staged.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, staged / Path(chapter.path).name)
        (staged / f"{Path(chapter.path).name}.json").write_text(json.dumps(
            {"uri": str(chapter.path), "execution_seconds": _finished[chapter.nodeid] - _started[chapter.nodeid]}))


def pytest_sessionfinish(session, exitstatus):
    folder = session.config.getoption("--chapter-cache")
    if not folder:
        return
    staged = Path(folder) / "staged"
    _stage(session, staged)
    if hasattr(session.config, "workerinput") or not staged.exists():
        return  # an xdist worker: the controller stores what it staged
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(folder)
    for path in sorted(staged.glob("*.ipynb")):
        about = json.loads(Path(f"{path}.json").read_text())
        cache.cache_notebook_bundle(CacheBundleIn(nbformat.read(path, as_version=4), about["uri"],
                                                  data={"execution_seconds": about["execution_seconds"]}),
                                    check_validity=False, overwrite=True)
    shutil.rmtree(staged)
