"""Training throughput of the compared methods on one machine: one optimiser step per iteration.

    python benchmarks/bench_methods.py                                  # CPU, 64 x 64, batch 2
    python benchmarks/bench_methods.py --device cuda --patch 512 --batch 12 --meddinov3-patch 896

Each method trains its own network with its trainer's optimiser and nnU-Net's Dice + CE loss
(nnU-Net's U-Net with its deep supervision) on random CT-like batches: forward, loss, backward,
step, under bf16 autocast on CUDA as nnU-Net trains. Data loading and augmentation are left out:
they are nnU-Net's and the same for every method. MedDINOv3 trains at its own high-resolution
patch (`--meddinov3-patch`, the paper's 896) unless told otherwise. Every method runs in a fresh
process, so peak memory is its own (CPU: peak resident set size; GPU: max allocated); the time per
iteration is the median over the timed steps.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import statistics
import time

import torch
from torch import nn

METHODS = ("nnunet", "segformer", "dino-unet", "meddinov3")


def nnunet_2d_unet(patch: int, num_classes: int) -> nn.Module:
    """nnU-Net's default 2D PlainConvUNet as its planner sizes it: pool until the map is 4 px wide
    (at most 7 pools), 32 features doubling per stage up to 512, deep supervision on."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    stages = min(8, int(math.log2(patch // 4)) + 1)
    return PlainConvUNet(
        input_channels=1, n_stages=stages, features_per_stage=[min(32 * 2**i, 512) for i in range(stages)],
        conv_op=nn.Conv2d, kernel_sizes=[[3, 3]] * stages, strides=[[1, 1]] + [[2, 2]] * (stages - 1),
        n_conv_per_stage=[2] * stages, num_classes=num_classes, n_conv_per_stage_decoder=[2] * (stages - 1),
        conv_bias=True, norm_op=nn.InstanceNorm2d, norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True,
    )


def build(method: str, patch: int, num_classes: int, backbone: str) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The method's network and its recipe's optimiser (meddinov3.nnunet.methods)."""
    from meddinov3.backbone import build_backbone
    from meddinov3.baselines import build_dino_unet, build_segformer
    from meddinov3.nnunet.methods import get_method
    from meddinov3.nnunet.network import freeze_parts
    from meddinov3.nnunet.optim import build_optimizer
    from meddinov3.segmentation import build_segmenter

    recipe = get_method(method).recipe
    if method == "nnunet":
        network = nnunet_2d_unet(patch, num_classes)
    elif method == "segformer":
        network = build_segformer(num_classes)
    elif method == "dino-unet":
        network = build_dino_unet(build_backbone(backbone, **recipe.backbone), num_classes)
    else:
        network = build_segmenter(build_backbone(backbone, **recipe.backbone), num_classes)
    freeze_parts(network, recipe.frozen)
    return network, build_optimizer(network, recipe)


def nnunet_loss(deep_supervision_outputs: int) -> nn.Module:
    """nnU-Net's Dice + CE loss, wrapped with its deep-supervision weights when there are several outputs."""
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    loss = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    if deep_supervision_outputs <= 1:
        return loss
    weights = torch.tensor([1 / 2**i for i in range(deep_supervision_outputs)])
    weights[-1] = 0
    return DeepSupervisionWrapper(loss, (weights / weights.sum()).tolist())


def targets_for(outputs, target: torch.Tensor):
    """nnU-Net's deep-supervision targets: the label map downsampled (nearest) to every output size."""
    if isinstance(outputs, torch.Tensor):
        return target
    return [nn.functional.interpolate(target, size=o.shape[-2:], mode="nearest") for o in outputs]


def measure(method: str, patch: int, batch: int, steps: int, device: str, backbone: str, num_classes: int, queue) -> None:
    torch.manual_seed(0)
    network, optimizer = build(method, patch, num_classes, backbone)
    network = network.to(device).train()
    total = sum(p.numel() for p in network.parameters())
    trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
    x = torch.randn(batch, 1, patch, patch, device=device)
    target = torch.randint(0, num_classes, (batch, 1, patch, patch), device=device).float()
    cuda = device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    with torch.no_grad(), autocast:
        outputs = network(x)
    loss_fn = nnunet_loss(1 if isinstance(outputs, torch.Tensor) else len(outputs))
    targets = targets_for(outputs, target)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(network(x), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12)  # nnU-Net clips every method at 12
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()

    step()  # warm-up
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)  # robust to other processes on a shared machine
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((seconds, total, trainable, peak))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--patch", type=int, default=64, help="Patch side for nnunet, segformer, dino-unet.")
    parser.add_argument("--meddinov3-patch", type=int, default=None, help="MedDINOv3's patch side (default: --patch).")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--classes", type=int, default=16, help="Output classes (AMOS22: 15 organs + background).")
    parser.add_argument("--backbone", default="vitb16", help="ViT preset of dino-unet and meddinov3.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    context = mp.get_context("spawn")
    rows = []
    for method in args.methods:
        patch = (args.meddinov3_patch or args.patch) if method == "meddinov3" else args.patch
        queue = context.Queue()
        worker = context.Process(
            target=measure, args=(method, patch, args.batch, args.steps, args.device, args.backbone, args.classes, queue)
        )
        worker.start()
        worker.join()
        if worker.exitcode != 0:
            rows.append((method, patch, None))
            continue
        rows.append((method, patch, queue.get()))

    unit = "GPU MiB" if args.device.startswith("cuda") else "RSS MiB"
    print(f"device {args.device}, batch {args.batch}, median of {args.steps} steps after 1 warm-up, {torch.get_num_threads()} threads")
    print(f"| method | patch | params (M) | trainable (M) | s / iteration | images / s | peak {unit} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for method, patch, result in rows:
        if result is None:
            print(f"| {method} | {patch} | failed | | | | |")
            continue
        seconds, total, trainable, peak = result
        print(f"| {method} | {patch} | {total / 1e6:.1f} | {trainable / 1e6:.1f} | {seconds:.3f} | "
              f"{args.batch / seconds:.1f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
