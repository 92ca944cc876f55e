"""GP-RF's switches (:class:`GPRFOptions`), their choices and the named configurations (:data:`PRESETS`)."""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..distributions import QUADRATURE_NODES
from ..options import ConfigError, OptionGroup, option

KERNELS = ("rbf", "linear")
VARIANCE_LINKS = ("lognormal", "squared")
OBJECTIVES = ("expected", "marginal", "iw", "iw_expected")
VARIATIONAL_FAMILIES = ("shared", "meanfield", "full", "natural")
AMPLITUDES = ("learned", "fixed", "floored")
FITS = ("elbo", "errors")
ERROR_INPUTS = ("features", "features_and_moments")
ERROR_MODELS = ("gp", "knn")
ERROR_SOURCES = ("train", "valid")
INDUCING_PLACEMENTS = ("random", "kmeans")
INITIAL_OUTPUTSCALE = 0.01  # prior variance of the encoder's error at initialization
ERROR_IMAGES = 10_000  # the observed errors of an error regression left at its default: this many, or every training image

# Named configurations: ``--gp-preset paper`` is the paper's wording read literally (reading R1).
PRESETS = {"paper": dict(gp_fit="elbo", objective="expected", amplitude="learned", amplitude_value=INITIAL_OUTPUTSCALE,
                         inducing=128, variational="shared", kernel="rbf", variance_link="lognormal")}


@dataclass
class GPRFOptions(OptionGroup):
    """Every switch of GP-RF, in one place: fields of :class:`gpvae.config.TrainConfig`, so CLI
    options, papermill parameters and Python keywords. The readings of the specification (book/specification.md) §3b:

    * R1 — ``gp_fit="elbo"``, ``amplitude="learned"``, trained jointly (the :data:`PRESETS` ``paper``);
    * R2 — ``amplitude="fixed"`` or ``"floored"`` at ``amplitude_value``;
    * R3 — ``init_from`` a trained run with ``freeze`` (options of the training, not of the model);
    * R4 — ``gp_fit="errors"``: GP regression of SVI errors (``error_*``; ``error_model="knn"`` is the control);
    * R5 — ``refit_rounds`` rounds of ``refit_epochs`` epochs with the corrected proposal, refitting between;
    * capacity and optimisation — ``inducing``, ``variational="natural"`` (natural gradients, ``ngd_lr``).
    """

    title = "GP-RF (the random-function model)"
    gp_preset: str = option("none", "named GP-RF configuration; its values replace the GP-RF options left at their "
                            "defaults, an option given another value wins (on the command line, one given at its "
                            "default where the preset differs is refused) (paper: the paper's wording read literally, "
                            "reading R1)", choices=("none", *PRESETS))
    kernel: str = option("rbf", "GP-RF kernel on encoder features", choices=KERNELS)
    inducing: int = option(128, "GP-RF inducing points M (gp_fit elbo)", minimum=1)
    variance_link: str = option("lognormal", "GP-RF variance link: GP on log sigma^2, or on sigma",
                                choices=VARIANCE_LINKS)
    objective: str = option("expected", "GP-RF objective (gp_fit elbo): expected ELBO over F, ELBO of the marginal, "
                            "importance-weighted bound of the marginal with iw_k samples, or the importance-weighted "
                            "bound of q(z | x, F) averaged over F", choices=OBJECTIVES)
    iw_k: int = option(5, "GP-RF objective iw / iw_expected: importance samples k per image", minimum=1)
    variational: str = option("shared", "GP-RF q(v): covariance shared per output group, diagonal, full per "
                              "output, or full with natural parameters trained by natural gradients",
                              choices=VARIATIONAL_FAMILIES)
    amplitude: str = option("learned", "GP-RF kernel amplitude (prior variance of the encoder's error): learned, "
                            "fixed at amplitude_value, or floored at it (reading R2)", choices=AMPLITUDES)
    amplitude_value: float = option(INITIAL_OUTPUTSCALE, "GP-RF kernel amplitude: initial, fixed or floor value",
                                    minimum=1e-8)
    ngd_lr: float = option(0.1, "GP-RF natural-gradient step size for q(v) (variational natural)", minimum=0.0)
    gp_fit: str = option("errors", "GP-RF posterior over functions: regression of observed SVI errors on training "
                         "images (reading R4, the study's best), or a variational GP in the ELBO (R1-R3)", choices=FITS)
    error_model: str = option("gp", "gp_fit errors: GP regression, or the k-nearest-neighbour control",
                              choices=ERROR_MODELS)
    error_source: str = option("train", "gp_fit errors: the images whose SVI errors are observed, training images or "
                               "the held-out validation images", choices=ERROR_SOURCES)
    error_images: int | None = option(None, "gp_fit errors: images of error_source whose SVI errors are observed "
                                      f"(default: {ERROR_IMAGES:,} or all of them, whichever is fewer)", minimum=1)
    error_inducing: int = option(512, "gp_fit errors: inducing inputs of the error GP's predictive", minimum=1)
    error_neighbours: int = option(10, "gp_fit errors with error_model knn: neighbours averaged", minimum=1)
    error_kernel_groups: int = option(2, "gp_fit errors: kernels of the error GP, one per output group (mean and "
                                      "log-variance errors) or one shared by all outputs", choices=(1, 2))
    error_inducing_placement: str = option("random", "gp_fit errors: inducing inputs at a seeded random subset of the "
                                           "observed features, or at their k-means centres", choices=INDUCING_PLACEMENTS)
    error_inputs: str = option("features", "gp_fit errors: inputs of the error model, the encoder's trunk features, "
                               "or those and the encoder's own mean and log-variance", choices=ERROR_INPUTS)
    error_variance_rank: int = option(0, "gp_fit errors: predictive variance through a rank-r factor of the M x M "
                                      "correction matrix (0: the full matrix)", minimum=0)
    quadrature_nodes: int = option(QUADRATURE_NODES, "Gauss-Hermite nodes of the marginal proposal's log-variance "
                                   "integral", minimum=2)
    error_svi_steps: int = option(250, "gp_fit errors: most SVI steps per observed error (Adam, lr 1e-2)",
                                  minimum=100)
    error_svi_samples: int = option(4, "gp_fit errors: draws per SVI step", minimum=1)
    refit_rounds: int = option(0, "gp_fit errors: rounds of training with the corrected proposal, the error model "
                               "refitted before each (reading R5)", minimum=0)
    refit_epochs: int = option(5, "gp_fit errors: epochs per refit round (the last rounds x refit_epochs epochs)",
                               minimum=1)

    def check(self) -> None:
        """Apply ``gp_preset`` (to the options left at their defaults), then refuse switches that contradict
        each other."""
        defaults = {f.name: f.default for f in fields(GPRFOptions)}
        if self.gp_preset != "none":
            for name, value in PRESETS[self.gp_preset].items():
                if getattr(self, name) == defaults[name]:
                    setattr(self, name, value)
        if self.error_model == "knn" and self.error_images is not None and self.error_neighbours > self.error_images:
            raise ConfigError(f"error_neighbours = {self.error_neighbours} exceeds error_images = {self.error_images}: "
                              "the nearest-neighbour control averages at most the observed errors")
        if self.variational == "natural" and self.gp_fit != "elbo":
            raise ConfigError("variational = 'natural' concerns gp_fit = 'elbo' only")
        changed = [k for k in ("objective", "iw_k") if getattr(self, k) != defaults[k]]
        if self.gp_fit != "elbo" and changed:
            raise ConfigError(f"{', '.join(f'{k} = {getattr(self, k)!r}' for k in changed)}: concern gp_fit = 'elbo' "
                              "only (gp_fit 'errors' is fitted to observed errors, not trained in a bound)")
        if "iw_k" in changed and not self.objective.startswith("iw"):
            raise ConfigError(f"iw_k = {self.iw_k} concerns objective 'iw' or 'iw_expected' only, not {self.objective!r}")

    def observed_images(self, available: int) -> int:
        """How many of the ``available`` images of ``error_source`` have their errors observed: ``error_images`` as
        given, else :data:`ERROR_IMAGES` or all of them, whichever is fewer (a default adapts to the data)."""
        return min(ERROR_IMAGES, available) if self.error_images is None else self.error_images
