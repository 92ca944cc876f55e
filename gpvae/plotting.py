"""One look for every figure of the book: a seaborn theme with a colour-blind-safe palette, and a
fixed colour, marker and label per model so a model looks the same in every chapter (the marker tells
apart the models whose colours are near: VAE and VLAE, IWAE, IAF and R4, HF and RME)."""
from __future__ import annotations

import seaborn as sns

PALETTE = "colorblind"
MODEL_LABELS = {"vae": "VAE", "iwae": "IWAE", "hf": "HF", "iaf": "IAF", "rme": "RME", "savae": "SA-VAE",
                "vlae": "VLAE", "gp": "GP-RF (R4)", "gp_paper": "GP-RF (R1, literal)",
                "vae_extra": "VAE +2 epochs (control)", "gp_refit": "GP-RF (R5, decoder refit)",
                "vae_continued": "VAE trained on (control)", "gp_iw": "GP-RF (R1, IW bound of q̄)",
                "gp_iw_expected": "GP-RF (R1, IW bound over F)",
                "gp_refit_source_lr": "GP-RF (R5) at lr 1e-5", "vae_extra_source_lr": "VAE +20 epochs"}
# GP-RF gets the strongest colours after the VAE's; grey (index 7) is left for reference lines
_COLOUR_INDEX = {"vae": 0, "gp": 1, "gp_paper": 2, "iwae": 3, "hf": 4, "iaf": 5, "rme": 6, "savae": 8, "vlae": 9}
MODEL_COLOURS = {run: sns.color_palette(PALETTE, 10)[i] for run, i in _COLOUR_INDEX.items()}
MODEL_COLOURS["vae_extra"] = (0.25, 0.25, 0.25)  # a control, not a model of the comparison: dark grey
MODEL_COLOURS["vae_continued"] = (0.45, 0.45, 0.45)
MODEL_COLOURS["gp_refit"] = sns.color_palette("dark", 10)[1]  # R4's orange, darker: the same family
MODEL_COLOURS["gp_iw"] = sns.color_palette("dark", 10)[2]  # R1's green, darker: R1 with another bound
MODEL_COLOURS["gp_iw_expected"] = sns.color_palette("pastel", 10)[2]
MODEL_COLOURS["gp_refit_source_lr"] = sns.color_palette("pastel", 10)[1]  # R5's family, lighter
MODEL_COLOURS["vae_extra_source_lr"] = (0.65, 0.65, 0.65)
MODEL_MARKERS = {"vae": "o", "iwae": "s", "hf": "^", "iaf": "v", "rme": "D", "savae": "P", "vlae": "X",
                 "gp": "*", "gp_paper": "h", "gp_refit": "p", "gp_iw": "<", "gp_iw_expected": ">",
                 "vae_extra": "d", "vae_continued": "8", "gp_refit_source_lr": "H", "vae_extra_source_lr": "x"}


def run_labels(grid) -> dict[str, str]:
    """:data:`MODEL_LABELS` for a grid: a control that trains a stated number of extra epochs is named by
    them and by the runs it controls (the CPU grid's ``vae_extra`` trains 2, the converged grid's 20)."""
    labels = dict(MODEL_LABELS)
    for run, spec in grid.runs.items():
        if spec.get("control_for") and spec.get("warm_start") and "epochs" in spec:
            controlled = ", ".join(MODEL_LABELS.get(r, r) for r in spec["control_for"])
            labels[run] = f"{MODEL_LABELS[spec['model']]} +{spec['epochs']} epochs (control of {controlled})"
    return labels


def use_theme() -> None:
    """The book's theme: seaborn ``whitegrid``, notebook context, colour-blind palette; in a notebook also the
    inline backend, so that a figure the pages draw without pyplot (:func:`gpvae.pages.subplots`) is shown and
    glued as an image."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    try:
        from IPython import get_ipython
    except ImportError:  # not in IPython: nothing to display into
        return
    shell = get_ipython()
    if shell is not None and "IPKernelApp" in shell.config:
        shell.run_line_magic("matplotlib", "inline")
