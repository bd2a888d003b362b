"""What each compared method actually trained with, read back from its final nnU-Net checkpoint.

The optimiser, its learning rates, weight decay and moments come from the saved optimiser state;
batch size, patch size and the recipe switch from the plans the trainer was built with (saved in
the checkpoint); the schedule and gradient clipping from the method's recipe, which its trainer
reads; the precision from the network spec the run recorded in its plans (ViT methods), or from
nnU-Net's own step on the device it ran on (the others). A reader can check a results table
against the paper's recipe row by row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from meddinov3.compare.results import ComparisonError

COLUMNS = (
    ("recipe", "Recipe"),
    ("optimizer", "Optimiser"),
    ("lr", "Learning rate"),
    ("weight_decay", "Weight decay"),
    ("moments", "Betas / momentum"),
    ("schedule", "Schedule"),
    ("precision", "Precision"),
    ("batch_size", "Batch"),
    ("patch_size", "Patch"),
)


@dataclass(frozen=True)
class TrainedRecipe:
    method: str
    recipe: str  # the recipe switch: default, release, or "default (= release)" for methods without slips
    optimizer: str
    lr: str
    weight_decay: str
    moments: str
    schedule: str
    precision: str
    batch_size: int
    patch_size: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def optimizer_name(group: dict[str, Any]) -> str:
    if "momentum" in group:
        return "SGD"
    return "AdamW" if group.get("decoupled_weight_decay", False) else "Adam"


def moments(group: dict[str, Any]) -> str:
    if "betas" in group:
        return "betas ({:g}, {:g})".format(*group["betas"])
    return f"momentum {group['momentum']:g}" + (", Nesterov" if group.get("nesterov") else "")


def learning_rates(groups: list[dict[str, Any]]) -> str:
    rates = [(group.get("name"), group.get("initial_lr", group["lr"])) for group in groups]
    if len(rates) == 1:
        return f"{rates[0][1]:g}"
    return ", ".join(f"{name or f'group {i}'} {lr:g}" for i, (name, lr) in enumerate(rates))


def recipe_switch(method, configuration: dict[str, Any]) -> str:
    from meddinov3.nnunet.spec import spec_in_configuration

    if method.release_recipe is None:
        return "default (= release)"
    spec = spec_in_configuration(configuration)
    return spec.recipe if spec is not None else "default"


PRECISION_NAMES = {
    "bf16": "bf16 autocast",
    "fp16": "fp16 autocast + GradScaler",
    "fp32": "fp32 (no autocast)",
}


def trained_precision(configuration: dict[str, Any], device: str) -> str:
    """What the run computed in: the precision its ViT trainer recorded in the plans, else nnU-Net's
    own train_step, which autocasts to fp16 with a GradScaler on CUDA only."""
    from meddinov3.nnunet.spec import spec_in_configuration

    spec = spec_in_configuration(configuration)
    if spec is not None and spec.precision is not None:
        return PRECISION_NAMES[spec.precision]
    if device.startswith("cuda"):
        return PRECISION_NAMES["fp16"]
    return f"fp32 ({device}: no autocast)"


def trained_recipe(method_name: str, fold_folder: Path) -> TrainedRecipe:
    """The recipe of the run in `fold_folder`, from its checkpoint_final.pth."""
    from meddinov3.backbone import CheckpointError
    from meddinov3.nnunet.checkpoints import read_nnunet_checkpoint
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.plans import resolved_configuration

    path = Path(fold_folder) / "checkpoint_final.pth"
    try:
        checkpoint = read_nnunet_checkpoint(path)
        groups = checkpoint["optimizer_state"]["param_groups"]
        init_args = checkpoint["init_args"]
        configuration = resolved_configuration(init_args["plans"], init_args["configuration"])
    except (CheckpointError, KeyError, TypeError) as error:
        raise ComparisonError(f"{path}: cannot read the training recipe ({type(error).__name__}: {error})") from error
    method = get_method(method_name)
    recipe = method.recipe  # schedule and clipping are the same in both of a method's recipes
    precision = trained_precision(configuration, str(init_args.get("device", "cuda")))
    return TrainedRecipe(
        method=method_name,
        recipe=recipe_switch(method, configuration),
        optimizer=optimizer_name(groups[0]),
        lr=learning_rates(groups),
        weight_decay=f"{groups[0]['weight_decay']:g}",
        moments=moments(groups[0]),
        schedule=f"poly {recipe.poly_exponent:g} per epoch, {checkpoint.get('current_epoch', '?')} epochs",
        precision=f"{precision}, clip {recipe.grad_clip:g}",
        batch_size=int(configuration["batch_size"]),
        patch_size="x".join(str(int(p)) for p in configuration["patch_size"]),
    )


def recipes_markdown(recipes: list[TrainedRecipe], display_name) -> list[str]:
    lines = [
        "## Training recipes",
        "",
        "As trained (read back from each run's final checkpoint); compare with the paper's and the release's "
        "in the README's method table.",
        "",
        "| Method | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for r in recipes:
        values = r.to_dict()
        lines.append(f"| {display_name(r.method)} | " + " | ".join(str(values[key]) for key, _ in COLUMNS) + " |")
    return lines
