"""Time spent around the network when `meddinov3 predict` segments a CT volume at 2d_896.

    python benchmarks/bench_predict.py --small              # CPU: tiny ViT, 512 x 512 x 20 volume
    python benchmarks/bench_predict.py                      # GPU: ViT-B/16, 512 x 512 x 100 volume
    python benchmarks/bench_predict.py --small --profile    # and cProfile's breakdown per row

One row with nnU-Net's test-time mirroring and one without. "network" is the time spent inside
the segmentation network's forward calls (a forward pre-hook and hook on it, synchronised on
CUDA); "around" is the rest of the `predict` call per slice, in wall-clock seconds and, on CPUs,
in CPU seconds of this process (all threads; less disturbed by other jobs on the machine): reading the volume, preprocessing
(cropping, normalisation, resampling to the 2d_896 grid), the sliding window's own work (tiling,
Gaussian weighting, flips for mirroring, accumulation), export back to the input grid and
writing the label map. With --small the network is a tiny ViT, so "around" dominates the total.
The model is a freshly initialised network in a model folder built like `meddinov3 train` writes
one (the weights do not change the work done around it).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_segmentation import TINY, network_spec, synchronize  # noqa: E402

NUM_CLASSES = 16  # AMOS22: 15 organs + background
SPACING_ZYX = (2.5, 0.8, 0.8)
SIDE = 896


def model_folder(root: Path, small: bool, device: torch.device) -> Path:
    """A 2d_896 model folder: the 512-pixel in-plane grid at 0.8 mm becomes 896 pixels."""
    from meddinov3.nnunet.standalone import save_model_folder, standalone_trainer

    precision = "bf16" if device.type == "cuda" else "fp32"
    spec = network_spec("meddinov3_vitb16", True, precision, **(TINY if small else {}))
    spacing = [s * 512 / SIDE for s in SPACING_ZYX[1:]]
    torch.manual_seed(0)
    trainer = standalone_trainer(spec, (SIDE, SIDE), NUM_CLASSES, 1, torch.device("cpu"), False, spacing)
    return save_model_folder(trainer)


def ct_volume(root: Path, slices: int) -> Path:
    from meddinov3.nnunet.synthetic import SyntheticDatasetSpec, write_synthetic_dataset

    volume = SyntheticDatasetSpec(num_training=0, num_test=1, shape_zyx=(slices, 512, 512), spacing_zyx=SPACING_ZYX)
    return write_synthetic_dataset(root / "volume", volume) / "imagesTs" / "case000_0000.nii.gz"


class NetworkClock:
    """Seconds spent inside the top-level segmentation network's forward calls."""

    def __init__(self, device: torch.device):
        from meddinov3.segmentation import MedDINOv3Segmenter

        self.device, self.seconds, self.cpu_seconds, self.calls, self._start = device, 0.0, 0.0, 0, (0.0, 0.0)
        self._kind = MedDINOv3Segmenter
        self._hooks = [torch.nn.modules.module.register_module_forward_pre_hook(self._enter),
                       torch.nn.modules.module.register_module_forward_hook(self._leave)]

    def _enter(self, module, args) -> None:
        if isinstance(module, self._kind):
            synchronize(self.device)
            self._start = time.perf_counter(), time.process_time()

    def _leave(self, module, args, output) -> None:
        if isinstance(module, self._kind):
            synchronize(self.device)
            self.seconds += time.perf_counter() - self._start[0]
            self.cpu_seconds += time.process_time() - self._start[1]
            self.calls += 1

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()


def run_predict(image: Path, out: Path, model: Path, device: torch.device, mirroring: bool,
                profile: cProfile.Profile | None) -> tuple[float, float, NetworkClock]:
    from meddinov3.nnunet.prediction import predict

    clock = NetworkClock(device)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            start, cpu_start = time.perf_counter(), time.process_time()
            with profile if profile is not None else contextlib.nullcontext():
                predict(image, out, model, device=device.type, overwrite=True, use_mirroring=mirroring,
                        show_progress=False)
            synchronize(device)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        clock.close()
    return seconds, cpu_seconds, clock


def print_profile(profile: cProfile.Profile, lines: int) -> None:
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("cumulative").print_stats(lines)
    stats.sort_stats("tottime").print_stats(lines)
    print(text.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help=f"tiny ViT ({TINY}) and 20 slices, for CPUs")
    parser.add_argument("--slices", type=int, default=None, help="slices of the 512 x 512 volume (20 small, else 100)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cuda, mps or cpu")
    parser.add_argument("--rows", nargs="+", choices=["mirroring", "no-mirroring"], default=["mirroring", "no-mirroring"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's breakdown of each row")
    parser.add_argument("--profile-lines", type=int, default=30)
    args = parser.parse_args()

    from meddinov3.devices import pick_device
    from meddinov3.nnunet.standalone import use_nnunet_folders

    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    slices = args.slices or (20 if args.small else 100)
    root = use_nnunet_folders(tempfile.mkdtemp(prefix="meddinov3_bench_predict_"))
    with contextlib.redirect_stdout(io.StringIO()):
        model = model_folder(root, args.small, device)
    image = ct_volume(root, slices)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    vit = f"ViT-B/16{' (tiny: ' + str(TINY) + ')' if args.small else ''}"
    print(f"# predict: 512x512x{slices} CT at 2d_{SIDE}, {NUM_CLASSES} classes, {vit}, {where}, torch {torch.__version__}")
    print("| row | total s | network s | network calls | around s/slice | network s/slice "
          "| around CPU s/slice | network CPU s/slice |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for row in args.rows:
        profile = cProfile.Profile() if args.profile else None
        seconds, cpu_seconds, clock = run_predict(image, root / "out", model, device, row == "mirroring", profile)
        around, cpu_around = (seconds - clock.seconds) / slices, (cpu_seconds - clock.cpu_seconds) / slices
        print(f"| {row} | {seconds:.2f} | {clock.seconds:.2f} | {clock.calls} | {around:.3f} "
              f"| {clock.seconds / slices:.3f} | {cpu_around:.3f} | {clock.cpu_seconds / slices:.3f} |", flush=True)
        if profile is not None:
            print_profile(profile, args.profile_lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
