"""`meddinov3 export` on the paper's network: export time, file size, ONNX Runtime vs PyTorch on the CPU.

    python benchmarks/bench_export.py            # ViT-B/16 multi-scale Primus at 896 x 896 (the paper's)
    python benchmarks/bench_export.py --small    # a tiny ViT at 96 x 96, for a quick check

The network is MedDINOv3's real architecture (meddinov3_vitb16: bfloat16 RoPE, 4 storage tokens,
multi-scale Primus on blocks 2/5/8/11) with random weights, in a model folder written by
nnU-Net's own trainer (`nnunet.standalone`), exported by the code `meddinov3 export` runs. Times
per patch are the median over --repeats batch-1 forward passes after one warm-up, float32 on
both sides, with the same number of threads (PyTorch's default unless --threads). "rel err" is
||onnx - torch|| / ||torch|| on one random patch (bfloat16 RoPE rounds float32 differences up to
~3e-4, see tests/test_export_onnx.py). Run it alone on the machine: timings share the cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_segmentation import TINY, network_spec  # noqa: E402

NUM_CLASSES = 16  # AMOS22: 15 organs + background


def model_folder(side: int, small: bool) -> Path:
    from meddinov3.nnunet.standalone import save_model_folder, standalone_trainer, use_nnunet_folders

    use_nnunet_folders(tempfile.mkdtemp(prefix="meddinov3_bench_export_"))
    spec = network_spec("meddinov3_vitb16", True, "fp32", **(TINY if small else {}))
    torch.manual_seed(0)
    trainer = standalone_trainer(spec, (side, side), NUM_CLASSES, 1, torch.device("cpu"), False)
    return save_model_folder(trainer)


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up: first-call allocations, ONNX Runtime's lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(side: int, small: bool, repeats: int, threads: int) -> dict[str, float]:
    import onnxruntime as ort

    from meddinov3.export.onnx_file import export_onnx
    from meddinov3.nnunet.model_folder import load_trained_model

    folder = model_folder(side, small)
    start = time.perf_counter()
    path = export_onnx(folder, folder / "model.onnx")
    export_seconds = time.perf_counter() - start
    network = load_trained_model(folder).network
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    patch = torch.randn(1, 1, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = network(patch)
        torch_seconds = median_seconds(lambda: network(patch), repeats)
    inputs = {"image": patch.numpy()}
    actual = torch.from_numpy(session.run(["logits"], inputs)[0])
    onnx_seconds = median_seconds(lambda: session.run(["logits"], inputs), repeats)
    return {
        "export_s": export_seconds,
        "file_mb": path.stat().st_size / 1e6,
        "onnx_s": onnx_seconds,
        "torch_s": torch_seconds,
        "rel_err": float((actual.double() - expected.double()).norm() / expected.double().norm()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help=f"tiny ViT {TINY} at 96 x 96")
    parser.add_argument("--size", type=int, default=None, help="patch side (default: 896; 96 with --small)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes (default: 5; 3 with --small)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for both")
    args = parser.parse_args()
    side = args.size or (96 if args.small else 896)
    repeats = args.repeats or (3 if args.small else 5)
    torch.set_num_threads(args.threads)

    import onnxruntime

    vit = f"meddinov3_vitb16{' (tiny: ' + str(TINY) + ')' if args.small else ''}"
    print(f"# meddinov3 export, {vit}, {NUM_CLASSES} classes, CPU x{args.threads} threads, torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}")
    print("| patch | export s | file MB | onnxruntime ms/patch | PyTorch ms/patch | onnxruntime / PyTorch | rel err |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    r = measure(side, args.small, repeats, args.threads)
    print(f"| {side}x{side} | {r['export_s']:.1f} | {r['file_mb']:.1f} | {1000 * r['onnx_s']:.1f} "
          f"| {1000 * r['torch_s']:.1f} | {r['onnx_s'] / r['torch_s']:.2f} | {r['rel_err']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
