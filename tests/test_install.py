"""The pinned torch/torchvision pair loads together (the CPU-only torch wheel cannot load the registry's torchvision)."""
import torch
import torchvision


def test_torchvision_compiled_ops_run_with_this_torch():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert torchvision.__version__.split("+")[0] and torch.__version__.split("+")[0]


def test_gpytorch_imports():
    import gpytorch
    assert hasattr(gpytorch.variational, "VariationalStrategy")
