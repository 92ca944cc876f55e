"""One look for every figure of the book: a seaborn theme with a colour-blind-safe palette, and a
fixed colour, marker and label per model so a model looks the same in every chapter (the marker tells
apart the models whose colours are near: VAE and VLAE, IWAE, IAF and R4, HF and RME)."""
from __future__ import annotations

import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.ticker import FuncFormatter, MaxNLocator

PALETTE = "colorblind"
MODEL_LABELS = {"vae": "VAE", "iwae": "IWAE", "hf": "HF", "iaf": "IAF", "rme": "RME", "savae": "SA-VAE",
                "vlae": "VLAE", "gp": "GP-RF (R4)", "gp_paper": "GP-RF (R1, literal)",
                "vae_extra": "VAE +2 epochs (control)", "gp_refit": "GP-RF (R5, decoder refit)",
                "vae_continued": "VAE trained on (control)", "gp_iw": "GP-RF (R1, IW bound of q̄)",
                "gp_iw_expected": "GP-RF (R1, IW bound over F)",
                "gp_refit_source_lr": "GP-RF (R5) at lr 1e-5", "vae_extra_source_lr": "VAE +20 epochs",
                "gp_heldout": "GP-RF (R4, held-out errors)", "vae_burda": "VAE, Burda et al.'s schedule",
                "iwae_burda": "IWAE, Burda et al.'s schedule"}
# GP-RF gets the strongest colours after the VAE's; grey (index 7) is left for reference lines
_COLOUR_INDEX = {"vae": 0, "gp": 1, "gp_paper": 2, "iwae": 3, "hf": 4, "iaf": 5, "rme": 6, "savae": 8, "vlae": 9}
MODEL_COLOURS = {run: sns.color_palette(PALETTE, 10)[i] for run, i in _COLOUR_INDEX.items()}
MODEL_COLOURS["vae_extra"] = (0.25, 0.25, 0.25)  # a control, not a model of the comparison: dark grey
MODEL_COLOURS["vae_continued"] = (0.45, 0.45, 0.45)
MODEL_COLOURS["gp_refit"] = sns.color_palette("dark", 10)[1]  # R4's orange, darker: the same family
MODEL_COLOURS["gp_iw"] = sns.color_palette("dark", 10)[2]  # R1's green, darker: R1 with another bound
MODEL_COLOURS["gp_iw_expected"] = sns.color_palette("bright", 10)[8]  # olive: drawn dotted over R1, which it tracks
MODEL_COLOURS["gp_refit_source_lr"] = sns.color_palette("pastel", 10)[1]  # R5's family, lighter
MODEL_COLOURS["vae_extra_source_lr"] = (0.65, 0.65, 0.65)
MODEL_COLOURS["gp_heldout"] = sns.color_palette("dark", 10)[5]  # R4 with its errors observed on other images
MODEL_COLOURS["vae_burda"] = sns.color_palette("dark", 10)[0]  # the VAE's and IWAE's colours, darker
MODEL_COLOURS["iwae_burda"] = sns.color_palette("dark", 10)[3]
MODEL_MARKERS = {"vae": "o", "iwae": "s", "hf": "^", "iaf": "v", "rme": "D", "savae": "P", "vlae": "X",
                 "gp": "*", "gp_paper": "h", "gp_refit": "p", "gp_iw": "<", "gp_iw_expected": ">",
                 "vae_extra": "d", "vae_continued": "8", "gp_refit_source_lr": "H", "vae_extra_source_lr": "x",
                 "gp_heldout": "1", "vae_burda": "2", "iwae_burda": "3"}


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


def spans_a_decade(*values) -> bool:
    """Whether the positive ``values`` (arrays) together span at least a factor of 10. A log axis over less
    than a decade labels its minor ticks, and their labels run into each other: draw such data linearly."""
    positive = np.concatenate([np.ravel(v) for v in values]).astype(float)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    return positive.size > 0 and positive.max() >= 10 * positive.min()


SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def scientific_ticks(ax, axis: str = "x", count: int = 4) -> None:
    """At most ``count`` major ticks on the linear ``axis`` ("x" or "y") of ``ax``, labelled with as many
    decimals as their spacing needs; values below 10⁻² or from 10⁵ up in units of a power of ten that joins the
    unit of the axis label (``[latent units²]`` becomes ``[10⁻³ latent units²]``), so that no offset text is
    drawn into the label and no two tick labels overlap. Call it after the data and the label are set."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    locator = MaxNLocator(count)
    target.set_major_locator(locator)
    low, high = sorted(target.get_view_interval())
    largest = max(abs(low), abs(high))
    power = int(np.floor(np.log10(largest))) if largest > 0 else 0
    power = 0 if -2 <= power <= 4 else power
    ticks = locator.tick_values(low, high) / 10.0 ** power
    step = np.min(np.diff(ticks)) if len(ticks) > 1 else 1.0
    decimals = max(0, -int(np.floor(np.log10(step)))) if step > 0 else 0
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 10.0 ** power:.{decimals}f}"))
    if power:
        label, scale = target.label.get_text(), f"10{str(power).translate(SUPERSCRIPTS)}"
        opened = label.rfind("[")
        target.label.set_text(f"{label[:opened + 1]}{scale} {label[opened + 1:]}" if opened >= 0 and label.endswith("]")
                              else f"{label} [{scale}]")


LABEL_OFFSETS = [(4, 4), (4, -12), (-12, 4), (-12, -12), (4, 15), (4, -23), (15, -4), (-23, -4), (4, 26), (4, -34)]


def place_labels(fig, annotations) -> None:
    """Move each point label of ``annotations`` (``ax.annotate`` with ``textcoords="offset points"``), in order, to
    the first of :data:`LABEL_OFFSETS` [points] where it overlaps no label placed before it; the first offset
    where none is free."""
    renderer = (fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)).get_renderer()
    placed = []
    for annotation in annotations:
        for offset in LABEL_OFFSETS:
            annotation.xyann = offset
            box = annotation.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
        else:
            annotation.xyann = LABEL_OFFSETS[0]
            box = annotation.get_window_extent(renderer)
        placed.append(box)
