"""What the demo runs, as data: dataset size, backbone width, pretraining and fine-tuning budgets.

Two presets. `small` is sized for a laptop or a 2-core CI runner (9 minutes on 2 idle cores); `gpu` is
the same pipeline with more data, a wider ViT and longer schedules for a machine with a CUDA GPU.
Both keep the paper's architecture shape: a 12-block ViT whose blocks 2, 5, 8, 11 feed the
multi-scale decoder; only the width is reduced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Demo datasets live in their own nnU-Net folders, so the id only has to be valid.
DATASET_ID = 901
DATASET_NAME = "SynthAbdomen"


@dataclass(frozen=True)
class DemoConfig:
    preset: str
    seed: int = 0
    # Synthetic CT (meddinov3 synth): training and held-out cases, "small" or "full" geometry.
    # 20 training cases: measured (random init, no mirroring) mean DSC 0.75 against 0.70 with 10.
    train_cases: int = 20
    # 8 held-out cases: the few-label comparison's interval is a paired bootstrap over them, and 3
    # cases allow only 10 distinct resamples (about 30 s more than 3, for synthesis and scoring).
    test_cases: int = 8
    synth_size: str = "small"
    # Backbone: the MedDINOv3 ViT-B/16 recipe (no qkv bias, LayerNorm eps 1e-6) at a reduced
    # width; depth stays 12. RoPE runs in float32: the release's bfloat16 RoPE makes a CPU
    # training step 2.7x slower (measured) and changes features by ~1e-3 only.
    backbone_preset: str = "meddinov3_vitb16"
    rope_dtype: str = "fp32"
    embed_dim: int = 96
    num_heads: int = 3
    # LayerScale 1.0, as the from-scratch recipe sets it; the random twin that fine-tuning and the
    # probe compare against is built the same way. With the release's 1e-5 (blocks near-identity at
    # the start) 600 iterations gave no probe gain (mean DSC 0.153 vs 0.153; 0.43 vs 0.27 at 1.0).
    layerscale_init: float = 1.0
    # Stage-1 pretraining (DINO + iBOT + KoLeo) on the curated slice corpus, with the from-scratch
    # recipe of configs/pretrain_tiny.yaml (the one that leaves the uniform prediction on a CPU in
    # minutes; the paper's stage-1 recipe starts from DINOv3 weights) at the demo's sizes.
    pretrain_recipe: str = "tiny"
    # 600 iterations (162 s on 2 idle cores): measured, DINO loss 0.93 ln K after 300, 0.88 after 600.
    pretrain_iterations: int = 600
    pretrain_batch_size: int = 32
    global_crop: int = 64
    local_crop: int = 32
    n_local_crops: int = 4
    head_prototypes: int = 16
    head_hidden_dim: int = 64
    head_bottleneck_dim: int = 32
    pretrain_lr: float = 1e-3
    # Linear probe (meddinov3 probe) of the exported backbone and its random twin, frozen: what
    # pretraining changed in the features, read without fine-tuning. Sized to tens of seconds.
    probe_size: int = 128
    # Blocks 2, 5, 8, 11 (what the decoder reads); measured after 600 iterations: mean DSC 0.43 vs
    # 0.27 for the random twin, against 0.28 vs 0.22 with the last block alone.
    probe_layers: str = "multiscale"
    probe_train_slices: int = 256
    probe_steps: int = 300
    # Fine-tuning inside nnU-Net on the `2d_<patch_size>` configuration, fold "all" (the
    # held-out test cases are the evaluation set).
    patch_size: int = 128
    batch_size: int = 4
    epochs: int = 24
    iterations_per_epoch: int = 60
    val_iterations_per_epoch: int = 2
    # The recipe's rates (3e-4 decoder, 3e-5 encoder) are for 250k iterations. For 1,440 iterations
    # (measured, random init, no mirroring, 20 cases: mean DSC 0.75 at 1e-2 / 1e-3, every organ
    # >= 0.68; at 3e-3 / 1e-3 with mirroring 0.38). Both inits get the same rates.
    decoder_lr: float = 1e-2
    encoder_lr: float = 1e-3
    # nnU-Net mirrors training patches along both image axes and averages mirrored predictions.
    # Both are off, as in nnU-Net's nnUNetTrainerNoMirroring: a mirrored patch shows the left kidney
    # where the right one belongs (and the liver where the spleen does), and untangling that takes
    # whole-body context that minutes of training do not learn (measured, small preset, random
    # init: mean DSC 0.378 with mirroring, 0.688 without; right kidney 0.03 -> 0.75).
    mirroring: bool = False
    # Few labelled cases: both inits also fine-tune on nested, seeded subsets of this many training
    # cases (the subsets `compare --train-cases` draws), each run few_label_epochs x
    # iterations_per_epoch iterations with the rates above, the same for both inits. 12 epochs
    # (720 iterations, half the full-data runs') keep the demo within 15 minutes on 2 cores: four runs,
    # two at a time, 160 s on 2 idle cores (measured; the whole demo 541 s).
    few_label_counts: tuple[int, ...] = (1, 2)
    few_label_epochs: int = 12
    # Feature maps of the real CT slice are drawn at this size (a multiple of 16).
    feature_size: int = 512
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DemoConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown demo settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> "DemoConfig":
        return dataclasses.replace(self, **changes)

    @property
    def dataset_folder(self) -> str:
        return f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"

    @property
    def configuration(self) -> str:
        return f"2d_{self.patch_size}"

    def backbone_overrides(self) -> dict[str, Any]:
        return {"embed_dim": self.embed_dim, "num_heads": self.num_heads, "depth": 12, "rope_dtype": self.rope_dtype,
                "layerscale_init": self.layerscale_init}


PRESETS: dict[str, DemoConfig] = {
    "small": DemoConfig(preset="small"),
    "gpu": DemoConfig(
        preset="gpu",
        train_cases=24,
        test_cases=6,
        embed_dim=384,
        num_heads=6,
        pretrain_iterations=2000,
        pretrain_batch_size=64,
        global_crop=128,
        local_crop=48,
        n_local_crops=8,
        # Two samples per prototype per batch, as in the tiny recipe (not measured on a GPU yet).
        head_prototypes=32,
        head_hidden_dim=1024,
        head_bottleneck_dim=256,
        patch_size=192,
        batch_size=16,
        epochs=50,
        iterations_per_epoch=100,
        val_iterations_per_epoch=10,
        feature_size=1024,
        device="cuda",
    ),
}


def demo_config(preset: str, **changes: Any) -> DemoConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown demo preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset].replace(**{k: v for k, v in changes.items() if v is not None})
