"""README.md states the landing page's verdicts, computed from the committed records: it cannot drift."""
import re
from pathlib import Path

from gpvae.pages import landing
from gpvae.runs.grid import Grid

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_states_each_claim_s_verdict_as_the_landing_page_computes_it():
    converged, small, screen = (landing.Evidence.load(name, Grid.of(profile)) for name, profile in
                                (("converged", "converged"), ("20 epochs", "cpu"), ("20-epoch screen", "iw")))
    lines = (landing.likelihood_line(converged, small, screen), landing.speed_line(converged, small),
             landing.difficulty_line(converged, small))
    found = README.read_text().split("## What it found", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^- (\*\*.*\*\*)$", found, flags=re.M) == [landing.headline(line) for line in lines]


def test_a_headline_is_the_bold_opening_of_a_claim_s_line():
    assert landing.headline("**2. Speed — fails.** GP-RF 4.22× …") == "**2. Speed — fails.**"
    import pytest
    with pytest.raises(ValueError, match="bold headline"):
        landing.headline("Speed fails")
