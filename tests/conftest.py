import os
from pathlib import Path

# No test downloads weights: huggingface_hub reads only its cache (it reads this when imported).
# Tests of the download path start their own local Hub server and clear it for that process.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

FIXTURES = Path(__file__).parent / "data" / "fixtures"

# Parity bounds of tests/data/fixtures/README.md, in the norm form of `relative_error`:
# float32 paths agree to float32 rounding; anything computed through bfloat16 RoPE (the
# MedDINOv3 layout) rounds differently on CPUs with and without native bfloat16 units - the
# reference code itself lands up to 2.7e-4 from its stored outputs on such a machine.
FLOAT32_TOL = 1e-5
BF16_ROPE_TOL = 1e-3
FIXTURE_TOL = {"dinov3_tiny_official": FLOAT32_TOL, "meddinov3_tiny_teacher": BF16_ROPE_TOL}


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def load_fixture(name: str):
    return torch.load(FIXTURES / name, map_location="cpu", weights_only=True)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| over the whole tensor.

    The norm form, not max |diff| / max |expected|: one rounding outlier among thousands of
    elements must not decide a parity test (it reads 2.3e-5 in the max form where the norm
    form reads 1.1e-6 on the same float32 output, measured on an AMD EPYC)."""
    actual, expected = actual.double(), expected.double()
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    return ((actual - expected).norm() / expected.norm().clamp(min=1e-30)).item()


@pytest.fixture
def nnunet_env(tmp_path, monkeypatch):
    """Empty nnU-Net folders for trainers built from `unit_trainers.unit_plans` (no weights or
    recipe from the environment)."""
    from meddinov3.nnunet.spec import RECIPE_ENV, WEIGHTS_ENV

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(RECIPE_ENV, raising=False)
    # initialize() infers nnU-Net's dataset format from the file endings it finds here.
    data = tmp_path / "nnUNet_preprocessed" / "Dataset990_Unit" / "nnUNetPlans_2d"
    data.mkdir(parents=True)
    (data / "case.b2nd").touch()
    return tmp_path


@pytest.fixture(scope="session")
def dino_unet_weights(tmp_path_factory):
    """An official-layout DINOv3 state dict (storage tokens, key-bias masks) wide enough for the adapter."""
    from meddinov3.backbone import build_backbone

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "dinov3_tiny64.pth"
    torch.save(build_backbone("vitb16", embed_dim=64, num_heads=2, depth=4).state_dict(), path)
    return path
