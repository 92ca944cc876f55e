"""The difficulty claim on its own design (the grid's ``difficulty_large``): per seed a draw of test images,
the reference VAE's per-image amortization gap there from q*, and every score per image; the claim decided
by a hierarchical bootstrap (:func:`gpvae.verdicts.ahead_by_bootstrap`) against the VAE's −ELBO, its encoder
variance and the nearest-neighbour control, with the combination the grid fixed beside it. Images whose q*
did not meet its SVI criterion are left out, and their share said. No torch: JSON records only."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pandas as pd
from pandas.io.formats.style import Styler

from .. import report, verdicts
from ..protocol import NEIGHBOURS, NEIGHBOUR_CONTROL
from . import dataset_label, listed
from .protocol import images_text

NAME = "difficulty_large"
OWN = "mean_function_variance"  # the GP's score that decides the claim
COMBINATION = "combination"  # the column of the grid's combination: the mean of its two scores' ranks
CONTROLS = {"negative_elbo": "the VAE's −ELBO", "encoder_variance": "the VAE's encoder variance",
            NEIGHBOUR_CONTROL: f"the distance to the {NEIGHBOURS} nearest training images"}
SCORE_LABELS = {OWN: "GP variance, mean function", "variance_function_variance": "GP variance, log-variance function",
                COMBINATION: "combination", **CONTROLS}


@dataclass
class Design:
    """The records of ``difficulty_large`` of one dataset: ``spec`` (the grid's), the seeds it ``declared`` per
    run, and per run the per-seed frames of its images that met the SVI criterion (``gap`` and a column per
    score, :data:`COMBINATION` added), with per seed the images drawn (``drawn``) and the draw's seed."""

    dataset: str
    spec: dict
    declared: dict[str, list[int]] = field(default_factory=dict)
    images: dict[str, dict[int, pd.DataFrame]] = field(default_factory=dict)
    drawn: dict[int, int] = field(default_factory=dict)
    subset_seed: int | None = None
    _decided: dict = field(default_factory=dict, repr=False)  # each bootstrap once: seconds each

    @classmethod
    def load(cls, grid, dataset: str = "mnist") -> "Design | None":
        """The design's records under ``grid``'s results folder; None where the grid does not declare it."""
        spec = grid.measurement(NAME, dataset)
        if not spec:
            return None
        design = cls(dataset, spec)
        for where, run, seed in grid.run_measurement_cells(NAME):
            if where == dataset:
                design.declared.setdefault(run, []).append(seed)
        for seed in grid.seeds:
            path = grid.layout.measurement_path(NAME, dataset, seed)
            if not path.exists():
                continue
            for run, result in json.loads(path.read_text())["runs"].items():
                if "diverged" in result:
                    continue
                frame = pd.DataFrame(result["per_image"])
                kept = frame[pd.Series(result["converged"], index=frame.index)].copy()
                first, second = spec["combination"]
                kept[COMBINATION] = (kept[first].rank() + kept[second].rank()) / 2
                design.images.setdefault(run, {})[seed] = kept
                design.drawn[seed], design.subset_seed = result["n"], result.get("subset_seed")
        return design

    def seeds(self, run: str) -> list[int]:
        return sorted(self.images.get(run, {}))

    def complete(self, run: str) -> bool:
        """Whether ``run`` has a record at every seed the grid declares for it."""
        declared = self.declared.get(run, [])
        return bool(declared) and set(declared) <= set(self.seeds(run))

    def kept(self, run: str) -> tuple[int, int]:
        """(images kept, images drawn) of ``run`` over its seeds."""
        seeds = self.seeds(run)
        return sum(len(self.images[run][s]) for s in seeds), sum(self.drawn[s] for s in seeds)

    def decide(self, run: str = "gp", own: str = OWN) -> verdicts.Verdict:
        """Claim 3 for ``run``'s score ``own`` against every control (:data:`CONTROLS`), by the hierarchical
        bootstrap of the grid's ``resamples``."""
        if (run, own) not in self._decided:
            per_seed = {seed: frame.rename(columns=CONTROLS) for seed, frame in self.images.get(run, {}).items()}
            present = [label for label in CONTROLS.values() if all(label in frame for frame in per_seed.values())]
            decided = verdicts.ahead_by_bootstrap(per_seed, own, present, self.spec["resamples"])
            missing = {label: verdicts.NOT_RESOLVED for label in CONTROLS.values() if label not in present}
            if missing:  # a control without values on every seed: the claim cannot hold against it
                details = {**decided.details, **missing}
                decided = dataclasses.replace(decided, details=details, outcome=verdicts.combined(list(details.values())),
                                              measured=decided.measured + "; not measured: " + ", ".join(missing))
            self._decided[(run, own)] = decided
        return self._decided[(run, own)]

    def brief(self, run: str = "gp") -> str:
        """The protocol in a few words, for a one-line verdict: ``"2,000 drawn test images × 3 seeds"``."""
        kind = "drawn" if self.subset_seed is not None else "first"
        return f"{listed(self.drawn.values(), counts=True)} {kind} test images × {len(self.seeds(run))} seeds"

    def protocol(self, run: str = "gp") -> str:
        """How the records were measured: images per seed (the draw), the share whose q* converged, seeds."""
        kept, drawn = self.kept(run)
        return (f"{images_text(listed(self.drawn.values(), counts=True), self.subset_seed)} per seed, of which {kept:,} of "
                f"{drawn:,} ({kept / drawn:.1%}) with q* converged, seeds {listed(self.seeds(run))}") if drawn else ""


def table(design: Design, labels: dict[str, str]) -> Styler | None:
    """Per run and score: the Spearman ρ with the per-image gap (mean over seeds) and, for the run's own scores
    and the combination, its lead over each control with the bootstrap's interval and outcome."""
    rows = []
    for run in design.images:
        for score in [OWN, "variance_function_variance", COMBINATION]:
            if not all(score in frame for frame in design.images[run].values()):
                continue
            decided = design.decide(run, score)
            row = {("", "run"): labels.get(run, run), ("", "score"): SCORE_LABELS[score],
                   ("", "ρ with the gap"): _interval(decided.differences["chance"], "")}
            for label in CONTROLS.values():
                if label in decided.differences:
                    row[("minus", label)] = f"{_interval(decided.differences[label], '+')}: {decided.details[label]}"
            rows.append(row)
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame.style.hide(axis="index").set_caption(
        f"{dataset_label(design.dataset)} at convergence: Spearman ρ of each score with the VAE encoder's per-image "
        f"amortization gap, mean over seeds [{verdicts.BOOTSTRAP_LEVEL:.0%} interval of a hierarchical bootstrap, "
        f"{design.spec['resamples']:,} resamples of seeds, then images], and each score's lead over every control "
        f"in the control's better orientation; {design.protocol()}. The combination averages the ranks of "
        + " and ".join(SCORE_LABELS[s] for s in design.spec["combination"]) + ", fixed in the grid before any value.")


def _interval(value: pd.Series, sign: str) -> str:
    """``"0.731 [0.702, 0.760]"``: a bootstrap estimate and its interval (none where too few seeds gave one)."""
    text = f"{value['estimate']:{sign}.3f}"
    return text + (f" [{value['low']:{sign}.3f}, {value['high']:{sign}.3f}]" if pd.notna(value["low"]) else "")


def line(design: Design, run: str = "gp") -> str:
    """Claim 3 on the design, one Markdown sentence: the outcome, ρ and each control's comparison."""
    decided = design.decide(run)
    return f"{decided.outcome}: {decided.measured} ({design.protocol(run)}; criterion: {decided.criterion})."


def status(design: Design | None, run: str = "gp", labels: dict[str, str] | None = None) -> str:
    """Markdown on how far the design has come for ``run``: not declared, no record yet, or its seeds measured
    of those the grid declares (the claim waits for all of them)."""
    if design is None:
        return "The grid declares no difficulty design of its own."
    measured = design.seeds(run)
    if not measured:
        return (f"The claim's own design ({design.spec['images']:,} images per seed) has no record yet: "
                "`make converged` measures it (the VAE's gap decomposition on those images first).")
    return (f"The claim's own design: {len(measured)} of {len(design.declared.get(run, []))} seeds of "
            f"{(labels or {}).get(run, run)} measured"
            + ("." if design.complete(run) else "; the landing page decides on it once every seed has it."))


OOD_CONTROLS = ("negative_elbo", NEIGHBOUR_CONTROL)  # the controls the grid's ood declaration names


def _ood_source(score: str, run: str, reference: str) -> str:
    """The run whose records hold a score: the GP-RF run for its own and the neighbour control, else the VAE."""
    return run if score in (OWN, NEIGHBOUR_CONTROL) else reference


def _auroc(ood: pd.DataFrame, run: str, score: str, other: str) -> pd.Series:
    """Per seed, the AUROC of ``run``'s ``score`` against the other dataset ``other``."""
    return ood[(ood.run == run) & (ood.score == score) & (ood.ood == other)].set_index("seed")["auroc"]


def ood_decisions(ood: pd.DataFrame, run: str = "gp", reference: str = "vae",
                  dataset: str = "mnist") -> dict[str, verdicts.Verdict]:
    """Per other dataset of ``run``'s ood records on ``dataset``: its GP variance (mean function) against chance
    (AUROC 0.5) and each of :data:`OOD_CONTROLS`, seed-matched (:func:`gpvae.verdicts.ahead_of_baselines`)."""
    ood = ood[ood.dataset == dataset]
    mine = ood[(ood.run == run) & (ood.score == OWN)]
    decisions = {}
    for other in dict.fromkeys(mine.ood):
        controls = {CONTROLS[score]: _auroc(ood, _ood_source(score, run, reference), score, other)
                    for score in OOD_CONTROLS}
        decisions[other] = verdicts.ahead_of_baselines(_auroc(ood, run, OWN, other),
                                                       {k: v for k, v in controls.items() if len(v)}, chance=0.5,
                                                       claim="the GP's variance flags other datasets")
    return decisions


def ood_line(ood: pd.DataFrame, run: str = "gp", reference: str = "vae", dataset: str = "mnist") -> str:
    """One sentence of :func:`ood_decisions` for a claim's line: per other dataset, the outcomes grouped; ``""``
    without a record."""
    parts = []
    for other, decided in ood_decisions(ood, run, reference, dataset).items():
        by_outcome: dict[str, list[str]] = {}
        for name, outcome in decided.details.items():
            by_outcome.setdefault(outcome, []).append(name)
        seeds = int(verdicts.spread(decided.differences["chance"])["n"])
        parts.append(f"{dataset_label(other)} ({seeds} seed{'s' * (seeds != 1)}): " + ", ".join(
            f"{ {verdicts.HOLDS: 'ahead of', verdicts.FAILS: 'behind'}.get(o, o + ' against')} {' and '.join(names)}"
            for o, names in by_outcome.items()))
    return ("Out of distribution, read beside the claim (AUROC of the GP's variance for images of another dataset): "
            + "; ".join(parts) + ".") if parts else ""


def ood_table(ood: pd.DataFrame, labels: dict[str, str], run: str = "gp", reference: str = "vae",
              others: tuple[str, ...] = ("gp_refit",), dataset: str = "mnist") -> Styler | None:
    """Out of distribution (rows of :func:`gpvae.report.load_ood`) on ``dataset``: per other dataset, the AUROC of
    "a higher score means the other dataset" (mean ± sd over seeds) of ``run``'s GP variance (mean function), of
    the ``reference`` VAE's −ELBO and encoder variance, of ``run``'s nearest-neighbour control and of the GP
    variance of each of ``others``; ``run``'s lead over chance and over each of :data:`OOD_CONTROLS`, seed-matched
    (:func:`gpvae.verdicts.ahead_of_baselines`, chance 0.5, each control in its better orientation). None without
    a record of ``run``."""
    ood = ood[ood.dataset == dataset]
    decisions = ood_decisions(ood, run, reference, dataset)
    if not decisions:
        return None
    gp_variance = f"{labels.get(run, run)}: GP variance"
    sources = {gp_variance: (run, OWN), **{f"{labels.get(o, o)}: GP variance": (o, OWN) for o in others},
               **{CONTROLS[score]: (_ood_source(score, run, reference), score)
                  for score in ("negative_elbo", "encoder_variance", NEIGHBOUR_CONTROL)}}
    rows = []
    for other, decided in decisions.items():
        for label, (source, score) in sources.items():
            values = _auroc(ood, source, score, other)
            if values.empty:
                continue
            stat = verdicts.spread(values)
            key = "chance" if label == gp_variance else label if label in decided.details else None
            lead = "–" if key is None else (
                f"{report.mean_sd(*verdicts.spread(decided.differences[key])[['mean', 'sd']], 3)}: {decided.details[key]}"
                + (" (reversed)" if key in decided.reversed_baselines else ""))
            rows.append({"other dataset": dataset_label(other), "score": label,
                         "AUROC": report.mean_sd(stat["mean"], stat["sd"], 3) + f" (n = {int(stat['n'])})",
                         f"{labels.get(run, run)}'s GP variance ahead by": lead})
    part = ood[ood.run.isin([run, reference, *others])]
    draws = part.subset_seed.drop_duplicates().tolist()
    images = images_text(listed(part.n, counts=True), draws[0]) + ("" if len(draws) == 1 else
                                                                    f" (records of several draws: {listed(draws)})")
    caption = (f"{dataset_label(dataset)} at convergence against other datasets: AUROC of \"a higher score means the "
               f"other dataset\", mean ± sd over seeds; {images} "
               f"against as many of each other dataset (drawn with seed {listed(part.ood_seed)}). Last column: on the row "
               f"\"{gp_variance}\", its lead over chance (0.5); on a control's row, its lead over that control (the "
               f"control in its better orientation). The grid declared the comparisons with "
               f"{' and '.join(CONTROLS[s] for s in OOD_CONTROLS)}; the other rows stand beside them. Verdict: "
               f"{decided.criterion}.")
    return pd.DataFrame(rows).style.hide(axis="index").set_caption(caption)
