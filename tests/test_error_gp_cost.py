"""The cheaper exact predictives of the error regression (reading R4): each switch against the full one."""
import pytest
import torch
from linear_operator import to_dense

from gpvae.config import TrainConfig
from gpvae.gp.error_regression import ErrorRegressionGP, kmeans

from .conftest import assert_all_close


def _fitted(groups=2, placement="random", rank=0, n=400, p=6, outputs=8, inducing=40, dtype=torch.float32):
    torch.manual_seed(0)
    x = torch.randn(n, p, dtype=dtype)
    errors = torch.cat([torch.sin(x[:, :1] * (j + 1)) + 0.1 * torch.randn(n, 1, dtype=dtype) for j in range(outputs)], 1)
    model = ErrorRegressionGP(p, outputs, inducing, groups, placement, rank).to(dtype)
    record = model.fit(x, errors, torch.Generator().manual_seed(1))
    return model, x, errors, record


def test_batched_kernels_equal_each_groups_gpytorch_kernel():
    model, x, _, _ = _fitted()
    batched = model.kernel_matrix(x[:50])
    for g, kernel in enumerate(model.kernels):
        assert_all_close(batched[g], to_dense(kernel.forward(x[:50], model.inducing)), atol=1e-5, what=f"group {g}")


@pytest.mark.parametrize("groups", [1, 2])
def test_low_rank_variance_at_full_rank_is_the_full_variance_and_never_below_it(groups):
    # in float64: the variance is a difference of nearly equal terms, which float32 keeps to ~1e-4
    full64, x64, _, _ = _fitted(groups=groups, dtype=torch.float64)
    exact64 = _fitted(groups=groups, rank=40, dtype=torch.float64)[0]
    assert_all_close(exact64.marginals(x64[:80])[1], full64.marginals(x64[:80])[1], atol=1e-9, what="variance, rank M")
    assert_all_close(exact64.marginals(x64[:80])[0], full64.marginals(x64[:80])[0], atol=1e-9, what="mean, rank M")
    full, x, _, _ = _fitted(groups=groups)
    low, _, _, record = _fitted(groups=groups, rank=5)
    assert (low.marginals(x[:80])[1] >= full.marginals(x[:80])[1] - 1e-6).all()  # dropping PSD terms adds variance
    assert 0 < min(record["variance_rank"]["kept_trace_share"]) <= 1


def test_one_shared_kernel_gives_every_output_one_variance():
    model, x, errors, _ = _fitted(groups=1)
    mean, var = model.marginals(x[:30])
    assert mean.shape == var.shape == (30, 8) and len(model.kernels) == 1
    standardized = var / model.scale.pow(2)
    assert_all_close(standardized, standardized[:, :1].expand_as(standardized), atol=1e-6, what="shared variance")


def test_kmeans_lowers_the_distortion_of_its_start_and_is_deterministic():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(200, 2) * 0.1 + c for c in torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])])
    start = x[[0, 250, 450]] + 0.8  # one point of each cluster, moved off it
    centres = kmeans(x, start)
    distortion = lambda c: torch.cdist(x, c).min(-1).values.pow(2).mean()
    assert distortion(centres) <= distortion(start) and distortion(centres) < 0.05
    assert torch.equal(centres, kmeans(x, start))


def test_kmeans_placement_explains_at_least_as_much_on_clustered_features():
    random_fit, x, errors, record_random = _fitted(inducing=12)
    kmeans_fit, _, _, record_kmeans = _fitted(inducing=12, placement="kmeans")
    assert not torch.equal(random_fit.inducing, kmeans_fit.inducing)
    assert record_kmeans["mean"]["explained_on_fit_subset"] > 0


def test_switches_are_options_of_the_one_config():
    config = TrainConfig(model="gp", error_kernel_groups=1, error_inducing_placement="kmeans", error_variance_rank=16,
                         quadrature_nodes=8)
    assert (config.error_kernel_groups, config.error_variance_rank, config.quadrature_nodes) == (1, 16, 8)
    with pytest.raises(ValueError, match="error_kernel_groups"):
        TrainConfig(model="gp", error_kernel_groups=3)


def test_macs_are_counted_from_the_shapes():
    full = ErrorRegressionGP(200, 100, 512)
    assert full.macs_per_image(200) == 2 * (512 * 200 + 512 + 512 * 50 + 512 * 512 + 512)
    assert ErrorRegressionGP(200, 100, 512, 1, "random", 16).macs_per_image(200) == 512 * 200 + 512 + 512 * 100 + 512 * 16
