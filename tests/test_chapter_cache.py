"""book/conftest.py: a chapter whose cells all pass under nbval is stored, with its outputs, in the cache the
book build reads; a chapter with a failing cell is not (the build would execute it itself)."""
import shutil
import subprocess
import sys

import nbformat
from jupyter_cache import get_cache

from .conftest import REPO


def notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_only_chapters_that_pass_are_stored_with_their_outputs(tmp_path):
    shutil.copy(REPO / "book" / "conftest.py", tmp_path / "conftest.py")
    notebook(tmp_path / "good.ipynb", "x = 6 * 7", "print(x)")
    notebook(tmp_path / "bad.ipynb", "print('before')", "raise ValueError('a chapter that fails')")
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           f"--chapter-cache={cache}", "good.ipynb", "bad.ipynb"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-2000:]  # bad.ipynb fails
    stored = {record.uri.rsplit("/", 1)[-1]: record for record in get_cache(cache).list_cache_records()}
    assert set(stored) == {"good.ipynb"}
    _, merged = get_cache(cache).merge_match_into_notebook(nbformat.read(tmp_path / "good.ipynb", as_version=4))
    assert merged.cells[1].outputs[0]["text"] == "42\n"
    assert not (cache / "staged").exists()
