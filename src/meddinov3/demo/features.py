"""Demo step 10: what the backbones see on the real CT slice (PCA and patch-similarity maps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meddinov3.demo.figures import INIT_TITLES, features_figure
from meddinov3.demo.steps import StepContext
from meddinov3.demo.workspace import INITS, Workspace

QUERY_POINTS = 3


def backbone_maps(weights: Path, hu, device: str) -> dict[str, Any]:
    from meddinov3.backbone import load_backbone
    from meddinov3.viz.features import default_queries, foreground_patches, patch_features, pca_rgb, similarity_map

    model = load_backbone(weights).to(device).eval()
    features = patch_features(model, hu)
    mask = foreground_patches(hu, model.patch_size)
    queries = default_queries(mask, QUERY_POINTS)
    return {"pca": pca_rgb(features, mask), "similarity": [similarity_map(features, q) for q in queries],
            "queries": queries, "patch": model.patch_size, "layerscale": mean_layerscale(model)}


def mean_layerscale(model) -> float:
    """Mean |LayerScale gamma| over the blocks: how far the residual branches have grown from
    their 1e-5 initialisation, i.e. how much the blocks do beyond passing the patch embedding on."""
    import torch

    gammas = [p.detach().abs().mean() for name, p in model.named_parameters() if name.endswith(".gamma")]
    return float(torch.stack(gammas).mean()) if gammas else float("nan")


def feature_maps(context: StepContext) -> dict[str, Any]:
    from meddinov3.viz.features import resize_slice
    from meddinov3.viz.ct_slice import BUNDLED_SLICE, read_ct_slice

    workspace = context.workspace
    size = workspace.config.feature_size
    hu = resize_slice(read_ct_slice(BUNDLED_SLICE), size)
    context.expect(len(INITS) + 1, "backbones")
    maps = {}
    for init in INITS:
        maps[INIT_TITLES[init]] = backbone_maps(workspace.backbone(init), hu, workspace.config.device)
        context.advance(status=init)
    patch = next(iter(maps.values()))["patch"]
    figure = features_figure(hu, maps, patch, features_path(workspace))
    context.advance(status="figure")
    layerscale = {title: entry["layerscale"] for title, entry in maps.items()}
    return {"figure": str(figure), "size": size, "slice": BUNDLED_SLICE.name, "layerscale": layerscale}


def features_path(workspace: Workspace) -> Path:
    return workspace.figures / "features.png"


def features_outputs(workspace: Workspace) -> list[Path]:
    return [features_path(workspace)]
