from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "data" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def load_fixture(name: str):
    return torch.load(FIXTURES / name, map_location="cpu", weights_only=True)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Max absolute difference relative to the largest expected magnitude."""
    return ((actual.float() - expected.float()).abs().max() / expected.float().abs().max()).item()
