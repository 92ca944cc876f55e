"""Records of record come from code that a commit holds."""
from pathlib import Path

import pytest

from gpvae import provenance
from gpvae.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
KNOWN_DIRTY = REPO / "tests" / "data" / "dirty_records.txt"


@pytest.mark.parametrize("commit", ["0123abc+dirty", "unknown"])
def test_records_of_record_are_refused_from_code_no_commit_holds(monkeypatch, tmp_path, commit):
    monkeypatch.setattr(provenance, "git_commit", lambda: commit)
    for results in ("results/workflow/converged", REPO / "results" / "workflow" / "cpu"):
        with pytest.raises(ConfigError, match="clean tree of a commit"):
            provenance.require_clean_commit(results)
    provenance.require_clean_commit(tmp_path / "results")  # a user's or a test's folder: not a record of record


def test_records_of_record_are_written_from_a_clean_commit(monkeypatch):
    monkeypatch.setattr(provenance, "git_commit", lambda: "0123abc")
    provenance.require_clean_commit("results/workflow/converged")


def test_the_workflow_refuses_to_start_from_a_dirty_tree():
    """The Snakefile's onstart handler (run before any job, not in a dry run) calls the guard on its results."""
    snakefile = (REPO / "workflow" / "Snakefile").read_text()
    handler = snakefile.split("\nonstart:\n", 1)[1].split("\n\n", 1)[0]
    assert "require_clean_commit(RESULTS)" in handler


def test_no_committed_record_joins_those_made_from_uncommitted_code():
    known = {line for line in KNOWN_DIRTY.read_text().splitlines() if line and not line.startswith("#")}
    dirty = {str(path.relative_to(REPO)) for path in (REPO / "results").rglob("*")
             if path.suffix in {".json", ".csv", ".md"} and "+dirty" in path.read_text()}
    assert dirty <= known, f"records made from uncommitted code: {sorted(dirty - known)}"
