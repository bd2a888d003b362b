"""Per-machine parity figures: how far this CPU lands from the reference fixtures.

    python benchmarks/parity_errors.py

Not a speed benchmark: it prints, for every reference output in tests/data/fixtures, the
relative error in the norm form the tests assert (||a - e|| / ||e||) beside the largest-element
form (max |a - e| / max |e|) and the bound. bfloat16 RoPE rounds differently on CPUs with and
without native bfloat16 units, so these figures differ between machines; compare them with
the ones quoted in the issue tracker when a parity test fails on a new machine.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from meddinov3.backbone import load_backbone
from meddinov3.segmentation import build_segmenter

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "data" / "fixtures"
BOUNDS = {"dinov3_tiny_official": 1e-5, "meddinov3_tiny_teacher": 1e-3}
FEATURE_KEYS = ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens", "x_prenorm")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def errors(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    a, e = actual.double(), expected.double()
    return ((a - e).norm() / e.norm()).item(), ((a - e).abs().max() / e.abs().max()).item()


@torch.no_grad()
def outputs(name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    ref = torch.load(FIXTURES / f"{name}_expected.pt", weights_only=True)
    model = load_backbone(FIXTURES / f"{name}.pth").eval()
    x, masks = ref["inputs"]["x"], ref["inputs"]["masks"]
    got = model.forward_features(x)
    pairs = {key: (got[key], ref["expected"][key]) for key in FEATURE_KEYS}
    masked = model.forward_features(x, masks=masks)
    pairs["masked_x_norm_patchtokens"] = (masked["x_norm_patchtokens"], ref["expected"]["masked_x_norm_patchtokens"])
    layers = model.get_intermediate_layers(x, n=ref["interaction_layers"], reshape=True, norm=True)
    pairs["intermediate_reshaped_normed"] = (torch.cat([t.flatten() for t in layers]),
                                             torch.cat([t.flatten() for t in ref["expected"]["intermediate_reshaped_normed"]]))
    pairs["forward_eval"] = (model(x), ref["expected"]["forward_eval"])
    for kind in ("primus_multiscale", "primus"):
        case = ref[kind]
        encoder = {k: v for k, v in case["state_dict"].items() if k.startswith("dino_encoder.")}
        net = build_segmenter(load_backbone(encoder), case["num_classes"], multiscale=kind == "primus_multiscale")
        net.load_state_dict(case["state_dict"], strict=True)
        pairs[f"{kind} logits"] = (net.eval()(case["x"]), case["logits"])
    return pairs


def main() -> None:
    print(f"CPU: {cpu_model()}   torch {torch.__version__}   threads {torch.get_num_threads()}")
    print(f"{'fixture':<24} {'output':<30} {'norm form':>10} {'max form':>10} {'bound':>7}")
    worst = {}
    for name, bound in BOUNDS.items():
        for key, (actual, expected) in outputs(name).items():
            norm, largest = errors(actual, expected)
            worst[name] = max(worst.get(name, 0.0), norm)
            flag = "" if norm <= bound else "  EXCEEDS"
            print(f"{name:<24} {key:<30} {norm:>10.2e} {largest:>10.2e} {bound:>7.0e}{flag}")
    for name, value in worst.items():
        print(f"worst {name}: {value:.2e} (bound {BOUNDS[name]:.0e})")


if __name__ == "__main__":
    main()
