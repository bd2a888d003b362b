"""`meddinov3 weights`: the published backbones by short name, and fetching one into the Hub cache."""

from __future__ import annotations

from typing import Optional

import typer


def weights(
    name: Optional[str] = typer.Argument(
        None, help="Download these weights into the Hugging Face cache and print their local path: an alias, "
        "hf://owner/name[@revision][/file] or owner/name. Without it: list the known weights."
    ),
) -> None:
    """The known backbone weights (aliases, Hub ids, sizes, licences, whether cached), or fetch one.

    Every option that takes weights accepts these names. Downloads go to the Hugging Face cache
    (HF_HOME / HF_HUB_CACHE); HF_HUB_OFFLINE=1 reads only from it. Gated repositories (the DINOv3
    ones) need their licence accepted on the model page and a token (`hf auth login` or HF_TOKEN).
    """
    from rich.console import Console

    from meddinov3.backbone.hub import resolve_weights

    console = Console()
    if name is not None:
        path = resolve_weights(name)
        console.print(str(path), highlight=False, soft_wrap=True)
        return
    console.print(known_weights_table())
    from huggingface_hub import constants

    console.print(
        "params: as published (DINOv3 README; MedDINOv3 model card: ViT-B/16). float32: 4 bytes per parameter of "
        f"the backbone's architecture. Cache: {constants.HF_HUB_CACHE}. Gated: accept the licence on "
        "https://huggingface.co/<id>, then `hf auth login` or set HF_TOKEN.",
        highlight=False,
    )


def known_weights_table():
    """One row per alias: Hub id, published parameters, float32 size, licence and access, cached or not."""
    import torch
    from rich.table import Table

    from meddinov3.backbone import build_backbone
    from meddinov3.backbone.hub import HUB_PREFIX, KNOWN_WEIGHTS, HubWeightsError, resolve_weights

    table = Table(title="Known weights: pass the alias or the id wherever weights are asked for")
    table.add_column("alias", no_wrap=True)
    table.add_column("Hugging Face id", overflow="fold")
    table.add_column("params", justify="right")
    table.add_column("float32", justify="right")
    table.add_column("licence")
    table.add_column("cached")
    for known in KNOWN_WEIGHTS:
        with torch.device("meta"):  # counts the architecture's parameters without allocating them
            count = sum(p.numel() for p in build_backbone(known.preset).parameters())
        try:
            resolve_weights(HUB_PREFIX + known.repo_id, local_only=True)
            cached = "yes"
        except HubWeightsError:
            cached = "no"
        table.add_row(
            known.alias,
            known.repo_id + (f"/{known.filename}" if known.filename else ""),
            f"{known.parameters_m:,}M",
            f"{4 * count / 1e9:.2f} GB",
            known.licence + (", gated" if known.gated else ""),
            cached,
        )
    return table
