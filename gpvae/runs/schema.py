"""The keys a grid file takes (``workflow/config/<profile>.yaml``), without the numerical stack."""
from ..layout import PER_RUN_MEASUREMENTS

GRID_KEYS = ("profile", "budget", "device", "threads_per_job", "seeds", "runs_dir", "results_dir",
             "evaluation", "bench", "datasets", "runs")
RUN_ONLY_KEYS = ("warm_start", "control_for", "note", "seeds", "compared")  # compared: false, a run no claim compares
# The evaluation of every run (a dataset may override them): K and test images of the test log-likelihood
# (max_test null: all of them) and of the gap decomposition; optional, the seeds that draw them at random
# (``test_subset_seed``: the max_test images; ``subset_seed``: the gap subset; absent or null: the first images).
EVALUATION_KEYS = ("max_test", "eval_k", "gap_subset", "gap_eval_k")
EVALUATION_OPTIONAL_KEYS = ("subset_seed", "test_subset_seed")
MEASUREMENT_KEYS = {"k_curve": ("runs", "eval_ks", "max_test"), "difficulty": ("runs", "reference"),
                    # difficulty on its own draw of ``images`` test images (the reference's gaps measured there),
                    # with the ``combination`` of two scores and the bootstrap's ``resamples`` fixed in advance
                    "difficulty_large": ("runs", "reference", "images", "subset_seed", "combination", "resamples"),
                    "bdmc": ("runs", "steps", "images", "max_width", "chains", "leapfrog"),
                    "ais": ("runs", "subset", "subset_seed", "chains", "certificate"),
                    "frontier": ("runs", "settings", "repeats"),
                    "ood": ("runs", "images", "subset_seed", "sets", "ood_seed", "elbo_samples"),
                    "proposal_control": ("runs", "valid_images")}
# Keys of a measurement that fix how its values are analysed, not what is measured: declared in the grid before
# any value, read by the pages; changing one measures nothing again.
ANALYSIS_KEYS = {"difficulty_large": ("combination", "resamples")}
# Keys of a measurement that count images, chains, samples or repeats: positive integers.
POSITIVE_MEASUREMENT_KEYS = {"k_curve": ("max_test",), "difficulty_large": ("images", "resamples"), "bdmc": ("images", "chains"), "ais": ("subset", "chains"),
                             "frontier": ("repeats",), "ood": ("images", "elbo_samples"),
                             "proposal_control": ("valid_images",)}
# The per-image scores of a difficulty record: the run's own (GP-RF's predictive variances), the reference
# VAE's, and the nearest-neighbour control (:data:`gpvae.protocol.NEIGHBOUR_CONTROL`).
DIFFICULTY_SCORES = ("mean_function_variance", "variance_function_variance", "encoder_variance", "negative_elbo",
                     "training_neighbour_distance")
# A measurement may also name the ``seeds`` it measures (default: every seed its runs have).
MEASUREMENT_OPTIONAL_KEYS = ("seeds",)
GROUPED_MEASUREMENTS = tuple(name for name in MEASUREMENT_KEYS if name not in PER_RUN_MEASUREMENTS)
DATASET_ONLY_KEYS = ("skip", "seeds", "evaluation", "overrides", *MEASUREMENT_KEYS)


def recorded_settings(record: dict, name: str) -> dict:
    """The settings a record of measurement ``name`` was made with: the values of the keys the measurement
    takes (None where the record lacks a key), without the runs it covers. A key it does not take is not a
    setting of it (ais's L, which the BDMC certificate fixes and the record's ``settings`` state), nor is a key of
    its analysis (:data:`ANALYSIS_KEYS`)."""
    spec = record.get(name) or {}
    return {k: spec.get(k) for k in MEASUREMENT_KEYS[name] if k != "runs" and k not in ANALYSIS_KEYS.get(name, ())}
