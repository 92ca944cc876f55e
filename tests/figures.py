"""What a reader sees of a figure: texts that run into each other."""
from contextlib import contextmanager
from itertools import combinations

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection

from gpvae.plotting import use_theme


@contextmanager
def book_theme():
    """The book's theme (fonts and sizes included) while a figure is made, the previous settings after."""
    with matplotlib.rc_context():
        use_theme()
        yield


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts of ``fig`` whose drawn boxes intersect: the tick labels of each axis
    among themselves, the texts and annotations drawn in each panel among themselves, and every axis label,
    title and tick label of one panel against those of the others."""
    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)

    def boxes(texts):
        return [(t.get_text(), t.get_window_extent(renderer)) for t in texts
                if t.get_visible() and t.get_text().strip()]

    def tick_labels(axis):  # the drawn ones: ticks outside the view keep a label that is never drawn
        low, high = sorted(axis.get_view_interval())
        slack = 1e-9 * max(abs(low), abs(high), 1e-300)
        return [tick.label1 for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]
                if low - slack <= tick.get_loc() <= high + slack]

    pairs, panels = [], []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            ticks = boxes(tick_labels(axis))
            pairs += [(a, b) for (a, box_a), (b, box_b) in combinations(ticks, 2) if box_a.overlaps(box_b)]
        inside = boxes(ax.texts)  # labels of points, keys: each must be read on its own
        pairs += [(a, b) for (a, box_a), (b, box_b) in combinations(inside, 2) if box_a.overlaps(box_b)]
        panels.append(boxes([ax.xaxis.label, ax.yaxis.label, ax.title, *tick_labels(ax.xaxis), *tick_labels(ax.yaxis)]))
    for one, other in combinations(panels, 2):
        pairs += [(a, b) for a, box_a in one for b, box_b in other if box_a.overlaps(box_b)]
    return pairs


def marked(line) -> np.ndarray:
    """The points of a line that carry its marker (``markevery``: None, every n-th, a slice, indices or a mask)."""
    xy, every = np.asarray(line.get_xydata(), dtype=float), line.get_markevery()
    if every is None:
        return xy
    if isinstance(every, (int, np.integer)):
        return xy[::every]
    if isinstance(every, slice):
        return xy[every]
    every = np.asarray(every)
    return xy[every] if every.dtype == bool else xy[every.astype(int)]


def clipped_markers(fig) -> list[tuple[str, float, float]]:
    """Markers of ``fig`` that the frame of their axes cuts: (label, x, y) of every point drawn less than half
    its marker's size from an edge of its axes, on either side (one farther outside is cropped on purpose:
    a curve that leaves the chosen range, not a marker cut in two)."""
    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.draw(fig.canvas.get_renderer())
    points_to_pixels = fig.dpi / 72
    found = []
    for ax in fig.axes:
        frame = ax.get_window_extent()
        drawn = [(line.get_label(), marked(line), line.get_markersize()) for line in ax.get_lines()
                 if line.get_marker() not in (None, "None", "", " ") and line.get_visible()]
        drawn += [(collection.get_label(), collection.get_offsets(), float(np.sqrt(np.max(collection.get_sizes()))))
                  for collection in ax.collections if isinstance(collection, PathCollection) and len(collection.get_sizes())
                  and collection.get_visible()]
        for label, xy, size in drawn:
            xy = np.asarray(xy, dtype=float).reshape(-1, 2)
            xy = xy[np.isfinite(xy).all(axis=1)]
            half = size * points_to_pixels / 2
            for (x, y), (px, py) in zip(xy, ax.transData.transform(xy)):
                inside_x, inside_y = frame.x0 - half < px < frame.x1 + half, frame.y0 - half < py < frame.y1 + half
                near_x = min(abs(px - frame.x0), abs(px - frame.x1)) < half
                near_y = min(abs(py - frame.y0), abs(py - frame.y1)) < half
                if inside_x and inside_y and (near_x or near_y):
                    found.append((label, float(x), float(y)))
    return found
