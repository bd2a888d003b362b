"""Dense linear probe of frozen backbones on CT (`meddinov3 probe`, or `run_probe` from Python).

    from meddinov3.probe import ProbeConfig, prepare_probe, run_probe
    result = run_probe("Dataset901_SynthAbdomen", {"teacher": backbone}, ProbeConfig(size=128))
    result.scores["teacher"].mean_dice

Imports are lazy so that the CLI can register the command without importing torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ProbeConfig", "ProbeData", "ProbeResult", "BackboneScores", "prepare_probe", "run_probe", "random_twin"]

_HOMES = {
    "ProbeConfig": "meddinov3.probe.config",
    "ProbeData": "meddinov3.probe.preparation",
    "prepare_probe": "meddinov3.probe.preparation",
    "ProbeResult": "meddinov3.probe.result",
    "BackboneScores": "meddinov3.probe.result",
    "run_probe": "meddinov3.probe.runner",
    "random_twin": "meddinov3.probe.backbones",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'meddinov3.probe' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
