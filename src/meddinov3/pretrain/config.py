"""Pretraining configuration as data: dataclasses, YAML files, `section.key=value` overrides.

Defaults are the DINOv3 recipe as used for MedDINOv3 stage 1; the stage presets in
`meddinov3/configs/pretrain_stage{1,2,3}.yaml` spell every number out. Iteration counts replace
DINOv3's "epochs" (DINOv3 fixes an epoch at 1250 iterations: 10 warmup epochs = 12500 iterations).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import yaml

from meddinov3.overrides import apply_values, nested, parse_assignment
from meddinov3.precision import PRECISION_CHOICES
from meddinov3.pretrain.lr_scaling import scaled_rates


@dataclass
class DataConfig:
    # A slice corpus written by `meddinov3 curate` (read with meddinov3.curate.SliceCorpus).
    corpus: Optional[str] = None
    # The real CT-3M slice shipped with the package (useful for smoke runs and demos).
    bundled_slice: bool = False
    # Procedurally generated CT-like slices, added to the corpus (0 = none).
    synthetic_slices: int = 0
    num_workers: int = 8
    seed: int = 0


@dataclass
class CropConfig:
    n_local: int = 8
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    # One resolution option is drawn per iteration (the same for every rank): option i uses
    # global_sizes[i], local_sizes[i] and, with Gram anchoring, gram_sizes[i] for the Gram teacher.
    global_sizes: list[int] = field(default_factory=lambda: [256])
    local_sizes: list[int] = field(default_factory=lambda: [112])
    gram_sizes: Optional[list[int]] = None
    size_probs: Optional[list[float]] = None
    # DINOv3's distilled, 7B, Gram and high-res configs turn flips off; on axial CT a flip also
    # swaps the patient's left and right (liver, spleen), which no real scan does.
    horizontal_flip_prob: float = 0.0


@dataclass
class IntensityConfig:
    """CT replacements for DINOv3's colour distortions, on HU windowed to [0, 1].

    Brightness / contrast jitter keeps DINOv3's strengths and probability; hue and saturation
    have no meaning for one-channel CT and are dropped; DINOv3's random grayscale slot (a no-op on
    CT) becomes a random gamma, which mimics different reconstruction kernels and windowing.
    Blur and solarisation probabilities are those DINOv3 *executes*: its GaussianBlur(p) hands
    1 - p to RandomApply, which applies with the probability it is given, so the configured
    (1.0, 0.1) / 0.5 run as (0.0, 0.9) / 0.5 - global crop 1 never blurred, global crop 2 blurred
    with 0.9 (dinov3 issue #286; the MedDINOv3 weights were trained that way). Here a probability
    is the probability of applying.
    """

    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    gamma_prob: float = 0.2
    gamma_range: tuple[float, float] = (0.7, 1.5)
    blur_prob_global: tuple[float, float] = (0.0, 0.9)
    blur_prob_local: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int = 9
    solarize_prob_global: tuple[float, float] = (0.0, 0.2)


@dataclass
class MaskConfig:
    probability: float = 0.5
    ratio_range: tuple[float, float] = (0.1, 0.5)
    min_block: int = 4
    max_fraction: float = 0.5


RANDOM_INIT = "random"  # model.init for a randomly initialised `model.arch`


@dataclass
class ModelConfig:
    # Weights to start from (a file, folder or Hub name: official DINOv3, MedDINOv3 teacher, an
    # export of this trainer), or "random". Heads are taken from it when it has them (MedDINOv3
    # layout), else initialised randomly. Default: the paper's stage-1 start, DINOv3 ViT-B/16 LVD-1689M.
    init: Optional[str] = "dinov3-vitb16"
    # Preset and overrides used when `init` is "random", or to override architecture fields of
    # the loaded checkpoint (e.g. rope_rescale_coords).
    arch: str = "vitb16"
    arch_overrides: dict[str, Any] = field(default_factory=dict)
    drop_path_rate: float = 0.1
    head_prototypes: int = 65536
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    head_layers: int = 3
    # "dinov3" (truncated normal, std 0.02) or "fan_in" (std 1/sqrt(fan-in)); see pretrain/heads.py.
    head_init: str = "dinov3"
    # BatchNorm (batch statistics) after each hidden layer of the heads, as DINO's `use_bn` option.
    # Statistics are per process (DINO synchronises them with SyncBatchNorm, which PyTorch runs
    # only on GPUs), so under torch.distributed each process normalises over its own share.
    head_batchnorm: bool = False


@dataclass
class LossConfig:
    dino_weight: float = 1.0
    # Weight of the local-crop DINO terms, ramped (cosine) from `dino_local_weight_start` over the
    # first `dino_local_weight_ramp` iterations: DINOv3's Gram and high-res phases use 0.5.
    dino_local_weight: float = 1.0
    dino_local_weight_start: float = 1.0
    dino_local_weight_ramp: int = 0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    # DINOv3 computes KoLeo on each rank's batch; True computes it over the global batch.
    koleo_distributed: bool = False
    student_temp: float = 0.1
    global_ignore_diagonal: bool = True
    centering: str = "sinkhorn_knopp"  # or "softmax" (DINO's EMA centering)
    center_momentum: float = 0.9


@dataclass
class GramConfig:
    enabled: bool = False
    weight: float = 2.0
    # Cosine ramp from `weight_start` to `weight` over the first `weight_ramp` iterations
    # (DINOv3's Gram phase: 0 -> 2 over one 1000-iteration epoch).
    weight_start: float = 2.0
    weight_ramp: int = 0
    # Gram teacher weights; empty = snapshot of the EMA teacher when the stage starts.
    teacher: Optional[str] = None
    # Re-take the snapshot from the EMA teacher every N iterations (0 = never).
    update_every: int = 0
    img_level: bool = True
    resize_mode: str = "bicubic"
    resize_antialias: bool = False


@dataclass
class OptimConfig:
    iterations: int = 100_000
    global_batch_size: int = 512
    # Base rates; the run trains with them scaled by `scaling_rule` at its global batch
    # (pretrain/lr_scaling.py), and validate() records the result in the two fields after them.
    lr: float = 2e-4
    min_lr: float = 1e-6
    scaling_rule: str = "sqrt_wrt_1024"
    scale_min_lr: bool = False
    lr_effective: Optional[float] = None
    min_lr_effective: Optional[float] = None
    warmup_iterations: int = 12_500
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum: float = 0.992
    momentum_end: float = 1.0
    teacher_temp: float = 0.07
    teacher_temp_warmup_start: float = 0.04
    teacher_temp_warmup_iterations: int = 37_500
    freeze_last_layer_iterations: int = 1250
    layerwise_decay: float = 0.9
    patch_embed_lr_mult: float = 0.2
    clip_grad: float = 3.0
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class EvalConfig:
    """Frozen-feature probe of the teacher during pretraining (see `meddinov3 probe`)."""

    # An nnU-Net raw dataset with labelled held-out cases (imagesTs + labelsTs); None = no probe.
    probe_dataset: Optional[str] = None
    # Probe after every N iterations (and after the last one); 0 = only after the last one.
    every: int = 0
    size: int = 128
    layers: str = "last"
    max_train_slices: int = 256
    steps: int = 500


@dataclass
class RunConfig:
    output_dir: str = "runs/pretrain"
    checkpoint_every: int = 1000
    log_every: int = 20
    # auto | bf16 | fp16 | fp32, as `meddinov3 train --precision` (meddinov3.precision): auto is bf16 on
    # GPUs that have it, fp16 (with a gradient scaler) on older GPUs, fp32 elsewhere.
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    # Keep the EMA teacher after these iterations, in the release layout, under snapshots/
    # (stage 2's Gram teacher is such a snapshot of stage 1).
    keep_teacher_at: list[int] = field(default_factory=list)
    # Stop after this many iterations in this invocation (the schedule still spans optim.iterations).
    stop_after: Optional[int] = None
    resume: bool = True


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    crops: CropConfig = field(default_factory=CropConfig)
    intensity: IntensityConfig = field(default_factory=IntensityConfig)
    masking: MaskConfig = field(default_factory=MaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    gram: GramConfig = field(default_factory=GramConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        crops = self.crops
        if crops.n_local < 1:
            raise ValueError("crops.n_local must be at least 1 (the DINO loss pairs local crops with global ones)")
        n_options = len(crops.global_sizes)
        if len(crops.local_sizes) != n_options:
            raise ValueError("crops.local_sizes must have one entry per crops.global_sizes entry")
        if crops.size_probs is not None and len(crops.size_probs) != n_options:
            raise ValueError("crops.size_probs must have one entry per crops.global_sizes entry")
        if self.gram.enabled and (crops.gram_sizes is None or len(crops.gram_sizes) != n_options):
            raise ValueError("gram.enabled needs crops.gram_sizes with one entry per crops.global_sizes entry")
        if self.loss.centering not in ("sinkhorn_knopp", "softmax"):
            raise ValueError(f"loss.centering must be 'sinkhorn_knopp' or 'softmax', got {self.loss.centering!r}")
        if self.run.precision not in PRECISION_CHOICES:
            raise ValueError(f"run.precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.run.precision!r}")
        if self.eval.every < 0:
            raise ValueError(f"eval.every must be 0 (only at the end) or a positive interval, got {self.eval.every}")
        if self.optim.global_batch_size < 1 or self.optim.iterations < 1:
            raise ValueError("optim.global_batch_size and optim.iterations must be positive")
        if not self.model.init:
            raise ValueError("model.init is empty: name the weights to start from (a file or a Hub name such as "
                             "dinov3-vitb16) or write model.init=random")
        if any(not isinstance(i, int) or i < 1 for i in self.run.keep_teacher_at):
            raise ValueError(f"run.keep_teacher_at must list positive iterations, got {self.run.keep_teacher_at!r}")
        rates = scaled_rates(self.optim)
        self.optim.lr_effective, self.optim.min_lr_effective = rates.lr, rates.min_lr


def parse_override(text: str) -> tuple[list[str], Any]:
    """`optim.lr=1e-4` -> (["optim", "lr"], 1e-4), read by the one override parser
    (`meddinov3.overrides`)."""
    try:
        key, value = parse_assignment(text)
    except ValueError as error:
        raise ValueError(f"override {text!r} is not of the form section.key=value ({error})") from None
    return key.split("."), value


def builtin_config_path(name: str) -> Path:
    """Path of a preset shipped with the package: 'stage1' -> configs/pretrain_stage1.yaml."""
    filename = name if name.endswith(".yaml") else f"pretrain_{name}.yaml"
    return Path(str(resources.files("meddinov3") / "configs" / filename))


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> PretrainConfig:
    """Defaults, then the YAML file (a path or a preset name like 'stage1'), then overrides."""
    config = PretrainConfig()
    if path is not None:
        file = Path(path)
        if not file.exists():
            file = builtin_config_path(str(path))
        if not file.exists():
            raise FileNotFoundError(f"pretraining config {path}: no such file and no preset of that name")
        try:
            values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{file}: not valid YAML: {error}") from error
        if not isinstance(values, dict):
            raise ValueError(f"{file}: expected a mapping of sections at the top level")
        apply_values(config, values, str(file))
    for text in overrides:
        key_path, value = parse_override(text)
        apply_values(config, nested(key_path, value), f"override {text!r}")
    config.validate()
    return config


def config_from_dict(values: dict[str, Any]) -> PretrainConfig:
    config = PretrainConfig()
    apply_values(config, values, "config")
    config.validate()
    return config
