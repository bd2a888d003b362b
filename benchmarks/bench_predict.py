"""Time spent around the network when `meddinov3 predict` segments a CT volume at 2d_896.

    python benchmarks/bench_predict.py --small              # CPU: tiny ViT, 512 x 512 x 100 volume
    python benchmarks/bench_predict.py                      # GPU: ViT-B/16, 512 x 512 x 100 volume
    python benchmarks/bench_predict.py --small --slices 20 --profile   # and cProfile's breakdown

One row with nnU-Net's test-time mirroring and one without. "network" is the time spent inside
the segmentation network's forward calls (a forward pre-hook and hook on it, synchronised on
CUDA); "around" is the rest of the `predict` call per slice, in wall-clock seconds and, on CPUs,
in CPU seconds of this process (all threads; less disturbed by other jobs on the machine):
loading the model, reading and checking the volume, preprocessing (cropping, normalisation,
resampling to the 2d_896 grid), the sliding window's own work (tiling, Gaussian weighting, flips
for mirroring, accumulation), export back to the input grid and writing the label map. With
--small the network is a tiny ViT, so "around" dominates the total. The model is a freshly
initialised network in a model folder built as `meddinov3 train` writes one (the weights do not
change the work done around it). `gpu_check.py`'s predict rows run `timed_predict` too.
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
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_segmentation import TINY, network_spec, synchronize  # noqa: E402

NUM_CLASSES = 16  # AMOS22: 15 organs + background
SPACING_ZYX = (2.5, 0.8, 0.8)
SIDE = 896


class NetworkClock:
    """Time, calls, images and output dtypes of the top-level segmentation network's forward calls."""

    def __init__(self, device: torch.device):
        from meddinov3.segmentation import MedDINOv3Segmenter

        self.device, self.seconds, self.cpu_seconds, self._start = device, 0.0, 0.0, (0.0, 0.0)
        self.calls, self.images, self.dtypes = 0, 0, set()
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
            self.calls, self.images = self.calls + 1, self.images + len(output)
            self.dtypes.add(output.dtype)

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()


@dataclass
class Volume:
    """A synthetic CT volume and a 2d_<side> model folder whose grid turns its in-plane pixels into side."""

    shape_zyx: tuple[int, int, int] = (100, 512, 512)
    spacing_zyx: tuple[float, float, float] = SPACING_ZYX
    side: int = SIDE
    backbone: dict = field(default_factory=dict)  # overrides of ViT-B/16
    precision: str = "bf16"

    def prepare(self, root: Path) -> tuple[Path, Path]:
        """(image file, model folder) under `root`, with nnU-Net's folders pointed there."""
        from meddinov3.nnunet.standalone import save_model_folder, standalone_trainer, use_nnunet_folders
        from meddinov3.synth.toy_dataset import SyntheticDatasetSpec, write_synthetic_dataset

        use_nnunet_folders(root)
        spec = SyntheticDatasetSpec(num_training=0, num_test=1, shape_zyx=self.shape_zyx, spacing_zyx=self.spacing_zyx)
        image = write_synthetic_dataset(root / "volume", spec) / "imagesTs" / "case000_0000.nii.gz"
        spacing = [s * self.shape_zyx[1] / self.side for s in self.spacing_zyx[1:]]
        network = network_spec("meddinov3_vitb16", True, self.precision, **self.backbone)
        torch.manual_seed(0)
        with contextlib.redirect_stdout(io.StringIO()):
            trainer = standalone_trainer(network, (self.side,) * 2, NUM_CLASSES, 1, torch.device("cpu"), False, spacing)
            return image, save_model_folder(trainer)


def timed_predict(image: Path, model: Path, out: Path, device: torch.device, mirroring: bool,
                  profile: cProfile.Profile | None = None) -> tuple[float, float, NetworkClock]:
    """(wall seconds, CPU seconds, network clock) of one `predict` call, model loading included."""
    from meddinov3.nnunet.prediction import predict

    clock = NetworkClock(device)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            start, cpu_start = time.perf_counter(), time.process_time()
            with profile if profile is not None else contextlib.nullcontext():
                written = predict(image, out, model, device=device.type, overwrite=True, use_mirroring=mirroring,
                                  show_progress=False)
            synchronize(device)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        clock.close()
    if not written[0].is_file():
        raise AssertionError(f"prediction wrote no {written[0]}")
    return seconds, cpu_seconds, clock


def print_profile(profile: cProfile.Profile, lines: int) -> None:
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("cumulative").print_stats(lines)
    stats.sort_stats("tottime").print_stats(lines)
    print(text.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help=f"tiny ViT ({TINY}), for CPUs")
    parser.add_argument("--slices", type=int, default=100, help="slices of the 512 x 512 volume")
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cuda, mps or cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--rows", nargs="+", choices=["mirroring", "no-mirroring"], default=["mirroring", "no-mirroring"])
    parser.add_argument("--profile", action="store_true", help="print cProfile's breakdown of each row")
    parser.add_argument("--profile-lines", type=int, default=30)
    args = parser.parse_args()

    from meddinov3.devices import pick_device

    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    volume = Volume((args.slices, 512, 512), backbone=TINY if args.small else {},
                    precision="bf16" if device.type == "cuda" else "fp32")
    image, model = volume.prepare(Path(tempfile.mkdtemp(prefix="meddinov3_bench_predict_")))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    vit = f"ViT-B/16{' (tiny: ' + str(TINY) + ')' if args.small else ''}"
    print(f"# predict: 512x512x{args.slices} CT at 2d_{SIDE}, {NUM_CLASSES} classes, {vit}, {volume.precision}, "
          f"{where}, torch {torch.__version__}")
    print("| row | total s | network s | network calls | around s/slice | network s/slice "
          "| around CPU s/slice | network CPU s/slice |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for row in args.rows:
        profile = cProfile.Profile() if args.profile else None
        seconds, cpu, clock = timed_predict(image, model, model.parent / "out", device, row == "mirroring", profile)
        around, cpu_around = (seconds - clock.seconds) / args.slices, (cpu - clock.cpu_seconds) / args.slices
        print(f"| {row} | {seconds:.2f} | {clock.seconds:.2f} | {clock.calls} | {around:.3f} "
              f"| {clock.seconds / args.slices:.3f} | {cpu_around:.3f} | {clock.cpu_seconds / args.slices:.3f} |",
              flush=True)
        if profile is not None:
            print_profile(profile, args.profile_lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
