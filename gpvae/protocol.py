"""The evaluation protocol's defaults (the specification, book/specification.md §4), in one place:
every caller — the CLI, :class:`gpvae.config.TrainConfig`, the measurements, the chapters' full
scale — reads them from here. A grid file or an option may override them per run; the defaults
themselves are written nowhere else."""
EVAL_K = 5000  # importance samples K of the test log-likelihood
GAP_EVAL_K = EVAL_K  # ... of log p̂(x) in the gap decomposition
GAP_SUBSET = 100  # test images of a gap decomposition unless told otherwise
GAP_ELBO_SAMPLES = 1000  # draws behind each ELBO of the gap decomposition
MOMENT_SAMPLES = 1000  # draws behind the SVI starting point of a proposal without closed-form moments
AIS_SUBSET = 500  # test images of an AIS measurement unless told otherwise
NEIGHBOURS = 10  # the nearest-neighbour control of a difficulty score: mean distance to this many training images
NEIGHBOUR_CONTROL = "training_neighbour_distance"  # that control's name in a difficulty record
