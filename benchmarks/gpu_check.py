"""The GPU path users run, measured in one table; exits non-zero if any path fails.

    python benchmarks/gpu_check.py            # one CUDA GPU; under 8 minutes on an H100/H200
    python benchmarks/gpu_check.py --small    # any machine, small sizes: every path runs end to end

Rows, the training step first (each reports its own failure and the script goes on; rows left
when the time budget is spent are marked skipped; `--rows` reruns a selection):
- precision: the trainer's train_step and validation_step (and through it nnU-Net's own CUDA
  autocast) at bf16, fp16 and fp32: the network's output dtype must be that precision.
- train: the trainer's real train_step, as `meddinov3 train` runs it (nnU-Net's trainer with the
  recipe, the precision's autocast and gradient scaler, torch.compile where nnU-Net compiles),
  for multi-scale ViT-B/16 at 896 with the batch `meddinov3 plan --gpu-memory` plans for this card
  (at most nnU-Net's usual 12): bf16 eager, then bf16 and fp16 compiled. Peak memory
  (torch.cuda.max_memory_allocated; on a CPU PyTorch's memory tracker, eager rows only) against
  the plan's estimate.
- forward <side>: backbone forward of ViT-B/16 (eval, bf16 autocast) at 224, 512 and 896.
- pretrain: one stage-1 iteration of ViT-B/16 (2 global 256 + 8 local 112 crops, DINO + iBOT +
  KoLeo heads, EMA teacher) at the per-GPU batch of the DINOv3 ViT-B recipe (64).
- predict: `meddinov3 predict` of a 512 x 512 x 100 CT volume at 2d_896 (preprocessing, sliding
  window, export), with test-time mirroring and with --no-mirroring, in seconds per volume (model
  loading included); the network must run in bf16 and see every slice (four times mirrored).
  Goal figures (issue 20): <= 5 s with mirroring, <= 2.5 s without, on an H200.
MFU: model FLOPs (torch.utils.flop_counter.FlopCounterMode over one eager forward + backward, or
forward for the forward rows) per second over the card's dense bf16/fp16 peak (`--peak-tflops`
for cards not in PEAK_TFLOPS; none on CPUs). Goal figures (issue 12): MFU >= 45% for the bf16
training step, estimate within 10% of the measured peak. Exit status: 0 all rows ran, 1 a path
failed, 2 rows were skipped for time (rerun those with --rows).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import math
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_predict import Volume, timed_predict  # noqa: E402
from bench_pretrain import multicrop_batches, pretrain_config  # noqa: E402
from bench_segmentation import TINY, measure_train_steps, network_spec, synchronize  # noqa: E402

GIB = 2**30
# Dense bf16 = fp16 tensor-core peaks, TFLOP/s (NVIDIA data sheets; SXM parts unless named).
PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.4, "A100": 312.0, "L40S": 362.0}
NUM_CLASSES = 16  # AMOS22: 15 organs + background
NNUNET_2D_BATCH = 12  # nnU-Net's usual 2d batch on abdominal CT, which 2d_896 inherits


@dataclass(frozen=True)
class Sizes:
    backbone: dict = field(default_factory=dict)  # overrides of ViT-B/16 (none: the paper's)
    train_side: int = 896
    forward_sides: tuple[int, ...] = (224, 512, 896)
    forward_batch: int = 16
    precision_side: int = 224
    pretrain_model: str = "vitb16"
    pretrain_batch: int = 64  # DINOv3 ViT-B: 64 per GPU, 8 GPUs for the global 512
    volume_zyx: tuple[int, int, int] = (100, 512, 512)
    volume_spacing_zyx: tuple[float, float, float] = (2.5, 0.8, 0.8)
    steps: int = 10
    warmup: int = 3


FULL = Sizes()
SMALL = Sizes(backbone=TINY, train_side=96, forward_sides=(32, 64, 96), forward_batch=2, precision_side=64,
              pretrain_model="tiny", pretrain_batch=4, volume_zyx=(8, 64, 64), steps=2, warmup=1)


@dataclass
class Row:
    check: str
    config: str
    status: str = "ok"
    rate: str = ""
    mfu: str = ""
    memory: str = ""
    seconds: float = 0.0


class Check:
    """Runs rows, prints each as it finishes, and remembers whether any failed."""

    def __init__(self, budget_s: float, peak_flops: float | None):
        self.start = time.perf_counter()
        self.budget_s = budget_s
        self.peak_flops = peak_flops
        self.failed = self.skipped = False
        print("| check | configuration | status | rate | MFU | peak memory vs plan | s |")
        print("|---|---|---|---:|---:|---|---:|", flush=True)

    def mfu(self, flops_per_s: float) -> str:
        return f"{100 * flops_per_s / self.peak_flops:.1f}%" if self.peak_flops else "n/a"

    def run(self, check: str, config: str, body: Callable[[Row], None]) -> None:
        row = Row(check, config)
        if time.perf_counter() - self.start > self.budget_s:
            row.status, self.skipped = "skipped: time budget spent", True
        else:
            started = time.perf_counter()
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net's banners and log lines
                    body(row)
            except Exception as err:  # a failing path is a row of the table, not the end of the check
                row.status = f"FAILED: {type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
                self.failed = True
                traceback.print_exc(file=sys.stderr)
            row.seconds = time.perf_counter() - started
            gc.collect()  # the row's trainer, and its GPU memory, before the next row
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        print(f"| {row.check} | {row.config} | {row.status} | {row.rate} | {row.mfu} | {row.memory} "
              f"| {row.seconds:.0f} |", flush=True)


def planned_batch(side: int, device: torch.device) -> int:
    """The 2d_<side> batch `meddinov3 plan --gpu-memory <this card>` plans (2 on a CPU)."""
    from meddinov3.nnunet.memory import paper_network_estimate

    if device.type != "cuda":
        return 2
    card_gib = torch.cuda.get_device_properties(device).total_memory / GIB
    return min(NNUNET_2D_BATCH, paper_network_estimate(side, NUM_CLASSES, 1).largest_batch(card_gib))


def precision_row(sizes: Sizes, device: torch.device) -> Callable[[Row], None]:
    def body(row: Row) -> None:
        from meddinov3.nnunet.network import unwrap
        from meddinov3.nnunet.standalone import standalone_trainer, synthetic_batch, use_nnunet_folders
        from meddinov3.precision import DTYPES

        use_nnunet_folders(tempfile.mkdtemp(prefix="meddinov3_gpu_check_"))
        seen = {}
        for precision in ("bf16", "fp16", "fp32"):
            spec = network_spec("meddinov3_vitb16", True, precision, **sizes.backbone)
            trainer = standalone_trainer(spec, (sizes.precision_side,) * 2, NUM_CLASSES, 2, device, False)
            dtypes: list[torch.dtype] = []
            unwrap(trainer.network).register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
            batch = synthetic_batch(trainer)
            loss = float(trainer.train_step(batch)["loss"])
            trainer.network.eval()
            with torch.no_grad():
                trainer.validation_step(batch)
            seen[precision] = dtypes
            if not math.isfinite(loss) or dtypes != [DTYPES[precision]] * 2:
                raise AssertionError(f"{precision}: loss {loss}, network outputs {dtypes} in train/validation step")
        row.rate = ", ".join(f"{p}: {str(d[0]).removeprefix('torch.')}" for p, d in seen.items())

    return body


def forward_row(sizes: Sizes, side: int, device: torch.device, check: Check) -> Callable[[Row], None]:
    def body(row: Row) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        from meddinov3.backbone import build_backbone

        model = build_backbone("meddinov3_vitb16", **sizes.backbone).to(device).eval()
        x = torch.randn(sizes.forward_batch, 3, side, side, device=device)

        def forward() -> float:
            start = time.perf_counter()
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
                model.forward_features(x)
            synchronize(device)
            return time.perf_counter() - start

        with FlopCounterMode(display=False) as counter:
            forward()
        for _ in range(sizes.warmup):
            forward()
        seconds = statistics.median(forward() for _ in range(sizes.steps))
        row.rate = f"{sizes.forward_batch / seconds:.1f} img/s"
        row.mfu = check.mfu(counter.get_total_flops() / seconds)

    return body


def train_row(sizes: Sizes, precision: str, compile_network: bool, device: torch.device, check: Check,
              batch_size: int) -> Callable[[Row], None]:
    def body(row: Row) -> None:
        spec = network_spec("meddinov3_vitb16", True, precision, **sizes.backbone)
        track = device.type != "cuda" and not compile_network
        result = measure_train_steps(spec, sizes.train_side, NUM_CLASSES, batch_size, device, compile_network,
                                     sizes.steps, sizes.warmup, track_cpu_memory=track)
        if compile_network and device.type != "cuda":
            row.config += " (here as nnU-Net compiles on CUDA)"
        row.rate = f"{result.images_per_s:.2f} img/s"
        row.mfu = check.mfu(result.flops_per_step / result.seconds)
        planned = result.estimate_bytes  # the plan's estimate for this network, precision and batch
        if result.peak_bytes is not None:
            row.memory = f"{result.peak_bytes / GIB:.2f} / {planned / GIB:.2f} GiB ({result.peak_bytes / planned:.2f})"
        row.status = f"ok, warm-up {result.warmup_seconds:.0f} s"

    return body


def pretrain_row(sizes: Sizes, device: torch.device, check: Check) -> Callable[[Row], None]:
    def body(row: Row) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        from meddinov3.pretrain.pretrainer import Pretrainer

        with tempfile.TemporaryDirectory() as tmp:
            config = pretrain_config(sizes.pretrain_model, 1, sizes.pretrain_batch, device.type, tmp)
            trainer = Pretrainer(config, device)
            batches = multicrop_batches(config, trainer.patch_size, sizes.pretrain_batch, 1)

            def step() -> float:
                start = time.perf_counter()
                loss = trainer.step(batches[0])["loss"]
                synchronize(device)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"pretraining loss {loss} at {trainer.precision}")
                return time.perf_counter() - start

            with FlopCounterMode(display=False) as counter:
                step()
            for _ in range(sizes.warmup):
                step()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = statistics.median(step() for _ in range(sizes.steps))
        row.config += f", {trainer.precision}"
        row.rate = f"{1 / seconds:.2f} it/s"
        row.mfu = check.mfu(counter.get_total_flops() / seconds)
        if device.type == "cuda":
            row.memory = f"{torch.cuda.max_memory_allocated(device) / GIB:.1f} GiB"

    return body


def predict_row(sizes: Sizes, device: torch.device, mirroring: bool) -> Callable[[Row], None]:
    def body(row: Row) -> None:
        volume = Volume(sizes.volume_zyx, sizes.volume_spacing_zyx, sizes.train_side, sizes.backbone, "bf16")
        image, model = volume.prepare(Path(tempfile.mkdtemp(prefix="meddinov3_gpu_check_")))
        seconds, _, network = timed_predict(image, model, model.parent / "out", device, mirroring)
        if network.dtypes != {torch.bfloat16}:
            raise AssertionError(f"the network's outputs were {network.dtypes}, expected bfloat16")
        # One 2D tile per slice; with mirroring each also flipped along y, x and both.
        expected = sizes.volume_zyx[0] * (4 if mirroring else 1)
        if network.images != expected:
            raise AssertionError(f"the network saw {network.images} images, expected {expected}")
        row.rate = f"{seconds:.1f} s/volume"

    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="small sizes (tiny ViT), for machines without a GPU")
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cuda, mps or cpu")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (default: looked up)")
    parser.add_argument("--budget-s", type=float, default=360.0, help="start no row after this many seconds")
    parser.add_argument("--rows", nargs="+", default=["precision", "train", "compiled", "forward", "pretrain", "predict"],
                        help="rows to run, in this order (default: all, training first)")
    args = parser.parse_args()

    from meddinov3.devices import pick_device

    device = pick_device(args.device)
    sizes = SMALL if args.small else FULL
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
        card = f"{name}, {torch.cuda.get_device_properties(device).total_memory / GIB:.0f} GiB"
    else:
        peak, card = args.peak_tflops, f"CPU x{torch.get_num_threads()} threads"
    vit = f"ViT-B/16{' (tiny: ' + str(TINY) + ')' if sizes.backbone else ''}"
    print(f"# gpu_check: {card}, torch {torch.__version__}, nnU-Net {version('nnunetv2')}, {vit}"
          f"{', peak ' + str(peak) + ' TFLOP/s' if peak else ''}")
    side, zyx = sizes.train_side, "x".join(str(n) for n in reversed(sizes.volume_zyx))
    batch = planned_batch(side, device)
    planned = f"as `meddinov3 plan --gpu-memory` plans for this card (at most {NNUNET_2D_BATCH})"
    print(f"# 2d_{side} training batch {batch}, {planned if device.type == 'cuda' else 'a CPU run'}")
    check = Check(args.budget_s, peak * 1e12 if peak else None)
    rows = {
        "precision": [("precision", f"train/validation step at {sizes.precision_side}", precision_row(sizes, device))],
        "forward": [("backbone forward", f"{s}, batch {sizes.forward_batch}, bf16", forward_row(sizes, s, device, check))
                    for s in sizes.forward_sides],
        "train": [("train step", f"{side}, batch {batch}, bf16, eager",
                   train_row(sizes, "bf16", False, device, check, batch))],
        "pretrain": [("pretrain step", f"stage 1 crops, batch {sizes.pretrain_batch}", pretrain_row(sizes, device, check))],
        "predict": [("predict", f"{zyx} volume at 2d_{side}, {'mirroring' if mirroring else '--no-mirroring'}",
                     predict_row(sizes, device, mirroring)) for mirroring in (True, False)],
        "compiled": [("train step", f"{side}, batch {batch}, {precision}, compiled",
                      train_row(sizes, precision, True, device, check, batch)) for precision in ("bf16", "fp16")],
    }
    unknown = set(args.rows) - set(rows)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(rows)}")
    for name in args.rows:
        for check_name, config, body in rows[name]:
            check.run(check_name, config, body)
    print(f"# {time.perf_counter() - check.start:.0f} s in all", flush=True)
    return 1 if check.failed else 2 if check.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
