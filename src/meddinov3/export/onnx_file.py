"""Write the network of a trained model folder as one ONNX file.

The network is the one `meddinov3 predict` runs (`nnunet.model_folder`), in float32, traced by
PyTorch's ONNX exporter (torch.export) at the plan's patch size with a dynamic batch axis. Two
steps keep the graph the function PyTorch computes: DINOv3's RoPE becomes constant tables for
that size (`fixed_rope`), and bfloat16 RoPE arithmetic runs in float32 with bfloat16 rounding
(`narrow_floats`), which ONNX Runtime's CPU provider can execute. The file carries what a user
needs to feed it like nnU-Net does (`metadata`) and is written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import onnx
import torch

from meddinov3.errors import InputError
from meddinov3.export.fixed_rope import with_fixed_rope
from meddinov3.export.narrow_floats import widen_narrow_floats
from meddinov3.export.metadata import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, export_metadata
from meddinov3.folders import writable_folder
from meddinov3.io import atomic_write
from meddinov3.nnunet.model_folder import load_trained_model
from meddinov3.nnunet.paths import NnUNetSetupError

# LayerNormalization needs 17; ONNX Runtime reads 18 since 1.14.
OPSET = 18
# torch.export specialises a batch of 1 (it would no longer be dynamic); any other size traces.
_TRACE_BATCH = 2


def checked_output(path: str | os.PathLike) -> Path:
    """`path` as a file name this process can write, checked before the model is loaded."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"--onnx {path}: is a folder; expected a file name such as model.onnx")
    writable_folder(path.parent, f"--onnx {path}: folder")
    return path


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Without the exporter's notes about torchvision ops and torch.export's deprecation warnings,
    which say nothing about this network."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def traced_graph(network, sample):
    """`network` as an ONNX ModelProto: input shaped like `sample` but for a dynamic batch axis,
    output its logits."""
    with _quiet_exporter():
        program = torch.onnx.export(
            network,
            (sample,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,
            verbose=False,
        )
    return program.model_proto


def export_onnx(
    model_dir: str | os.PathLike,
    output: str | os.PathLike,
    fold: int | str = 0,
    checkpoint_name: str = "checkpoint_final.pth",
) -> Path:
    """Write fold `fold` of the trained model folder `model_dir` to `output` as ONNX; returns it."""
    output = checked_output(output)
    model = load_trained_model(model_dir, (fold,), checkpoint_name)
    patch_size = [int(s) for s in model.configuration_manager.patch_size]
    if len(patch_size) != 2:
        raise NnUNetSetupError(
            f"{model.folder}: configuration {model.configuration_name!r} has a {len(patch_size)}D patch; "
            "export takes 2D configurations"
        )
    sample = torch.randn(_TRACE_BATCH, model.num_input_channels, *patch_size)
    graph = widen_narrow_floats(traced_graph(with_fixed_rope(model.network, sample), sample))
    onnx.helper.set_model_props(graph, {METADATA_KEY: json.dumps(export_metadata(model, fold), indent=1)})
    onnx.checker.check_model(graph)
    return atomic_write(output, lambda tmp: onnx.save_model(graph, tmp))
