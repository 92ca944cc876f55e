"""One look for every figure of the book: a seaborn theme with a colour-blind-safe palette, and a
fixed colour and label per model so a model looks the same in every chapter."""
from __future__ import annotations

import seaborn as sns

PALETTE = "colorblind"
MODEL_LABELS = {"vae": "VAE", "iwae": "IWAE", "hf": "HF", "iaf": "IAF", "rme": "RME", "savae": "SA-VAE",
                "vlae": "VLAE", "gp": "GP-RF (R4)", "gp_paper": "GP-RF (R1, literal)"}
MODEL_COLOURS = dict(zip(MODEL_LABELS, sns.color_palette(PALETTE, len(MODEL_LABELS))))


def use_theme() -> None:
    """The book's theme: seaborn ``whitegrid``, notebook context, colour-blind palette."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
