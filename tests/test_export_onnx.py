"""`meddinov3 export`: the network of a real model folder as ONNX, run by ONNX Runtime on the CPU.

Model folders are written by nnU-Net's own trainer and checkpoint writer (`nnunet.standalone`)
for a rectangular 64 x 48 patch (so a RoPE table for the transposed 3 x 4 token grid has the
right size and the wrong values). The DINOv3 encoders load the parity fixtures, whose LayerScale
gammas are 0.1-1 (randomly initialised blocks would scale attention, and RoPE with it, by 1e-5).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import BF16_ROPE_TOL, FIXTURES, relative_error
from meddinov3.export.metadata import METADATA_KEY, read_metadata
from meddinov3.export.onnx_file import OPSET, export_onnx
from meddinov3.nnunet.model_folder import load_trained_model

PATCH = (64, 48)
NUM_CLASSES = 3
# The bound for float32 graphs (norm form, see conftest.relative_error).
FLOAT32_EXPORT_TOL = 1e-4
TINY_VIT = {"embed_dim": 48, "num_heads": 2, "depth": 4}
OFFICIAL = FIXTURES / "dinov3_tiny_official.pth"
WEIGHTS = {"dinov3": OFFICIAL, "dinov3-single": OFFICIAL, "meddinov3": FIXTURES / "meddinov3_tiny_teacher.pth"}


def write_model_folder(root: Path, method: str, weights: Path | None = None) -> Path:
    """A model folder of `method` with a PATCH-sized 2D configuration, as `meddinov3 train` leaves it."""
    from meddinov3.nnunet.methods import METHODS
    from meddinov3.nnunet.spec import WEIGHTS_ENV, build_spec
    from meddinov3.nnunet.standalone import DATASET_NAME, save_model_folder, standalone_trainer, use_nnunet_folders
    from meddinov3.nnunet.trainer_classes import trainer_class
    from unit_trainers import initialized_trainer, unit_plans

    with pytest.MonkeyPatch.context() as patch:
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_compile"):
            patch.setenv(name, "")  # restored when the context ends
        patch.delenv(WEIGHTS_ENV, raising=False)
        use_nnunet_folders(root)
        torch.manual_seed(0)
        if METHODS[method].backbone_preset is None:  # nnU-Net's U-Net, SegFormer: plans without a ViT spec
            plans = {**unit_plans(PATCH), "dataset_name": DATASET_NAME}
            trainer = initialized_trainer(trainer_class(METHODS[method].trainer), plans)
        else:
            spec = build_spec(METHODS[method], weights=weights, backbone_overrides=None if weights else TINY_VIT)
            spec.precision = "fp32"
            trainer = standalone_trainer(spec, PATCH, NUM_CLASSES, batch_size=2, device=torch.device("cpu"))
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # the mirroring axes, as training sets them
        return save_model_folder(trainer)


def onnx_logits(path: Path, images: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["logits"], {"image": images.numpy()})[0])


def torch_logits(model_dir: Path, images: torch.Tensor) -> torch.Tensor:
    """The network as `meddinov3 predict` runs it (float32), on `images`."""
    with torch.no_grad():
        return load_trained_model(model_dir).network(images)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, request) -> tuple[Path, Path]:
    """(model folder, exported file) of the method named by the test's parameter."""
    method = request.param
    root = tmp_path_factory.mktemp(f"export_{method}")
    weights = request.getfixturevalue("dino_unet_weights") if method == "dino-unet" else WEIGHTS.get(method)
    model_dir = write_model_folder(root, method, weights)
    return model_dir, export_onnx(model_dir, root / "exported" / "model.onnx")


@pytest.mark.parametrize("exported", ["dinov3", pytest.param("dinov3-single", marks=pytest.mark.slow)], indirect=True)
def test_onnx_runtime_computes_what_pytorch_computes(exported):
    """Multi- and single-scale Primus on a float32-RoPE DINOv3 encoder: batch 2 and 3 through one file."""
    model_dir, path = exported
    for batch in (2, 3):
        images = torch.randn(batch, 1, *PATCH, generator=torch.Generator().manual_seed(batch))
        expected = torch_logits(model_dir, images)
        assert expected.shape == (batch, NUM_CLASSES, *PATCH)
        assert relative_error(onnx_logits(path, images), expected) <= FLOAT32_EXPORT_TOL


@pytest.mark.parametrize("exported", ["dinov3"], indirect=True)
def test_the_file_takes_any_batch_at_the_plans_patch_size(exported):
    _, path = exported
    graph = onnx.load(str(path)).graph
    (image,), (logits,) = graph.input, graph.output
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert dims == ["batch", 1, *PATCH]
    assert [d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim] == ["batch", NUM_CLASSES, *PATCH]
    assert onnx.load(str(path)).opset_import[0].version == OPSET >= 17
    with pytest.raises(Exception, match="image"):
        onnx_logits(path, torch.randn(1, 1, PATCH[1], PATCH[0]))  # the patch is fixed


@pytest.mark.parametrize("exported", ["meddinov3"], indirect=True)
def test_bfloat16_rope_model_keeps_its_rounding(exported):
    """MedDINOv3 computes RoPE in bfloat16; the bound is the fixtures' one for bf16-RoPE outputs:
    rounding to bfloat16 magnifies float32 differences (PyTorch's own output moves by 2.6e-4 when
    the input moves by 1e-7; ONNX Runtime lands 2.8e-4 away), while dropping the rounding puts the
    output 2.0e-3 away (measured on this model)."""
    model_dir, path = exported
    images = torch.randn(2, 1, *PATCH, generator=torch.Generator().manual_seed(0))
    assert relative_error(onnx_logits(path, images), torch_logits(model_dir, images)) <= BF16_ROPE_TOL


@pytest.mark.parametrize("rope_dtype", ["bf16", "fp16"])
def test_narrow_rope_arithmetic_rounds_as_pytorch_does(rope_dtype):
    """RoPE alone, on the same queries in PyTorch and ONNX Runtime: equal bit for bit."""
    from meddinov3.backbone.config import BackboneConfig
    from meddinov3.backbone.rope import RopePositionEmbedding, apply_rope
    from meddinov3.export.fixed_rope import FixedRope
    from meddinov3.export.narrow_floats import widen_narrow_floats
    from meddinov3.export.onnx_file import traced_graph

    grid = (4, 3)

    class RotatedQueries(torch.nn.Module):
        def __init__(self):
            super().__init__()
            config = BackboneConfig(embed_dim=48, num_heads=2, rope_dtype=rope_dtype)
            self.rope = FixedRope(RopePositionEmbedding(config), grid)

        def forward(self, queries: torch.Tensor) -> torch.Tensor:
            return apply_rope(queries, queries, self.rope(*grid))[0]

    module = RotatedQueries().eval()
    # CLS + 4 storage tokens, then the 12 patch tokens; values over several binades.
    queries = torch.randn(2, 2, 5 + grid[0] * grid[1], 24, generator=torch.Generator().manual_seed(0)) * 30
    graph = widen_narrow_floats(traced_graph(module, queries))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    rotated = session.run(None, {"image": queries.numpy()})[0]
    with torch.no_grad():
        assert np.array_equal(rotated, module(queries).numpy())


@pytest.mark.parametrize("exported", ["dinov3"], indirect=True)
def test_metadata_says_how_nnunet_feeds_the_network(exported):
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization

    from meddinov3.nnunet.checkpoints import read_nnunet_checkpoint

    model_dir, path = exported
    metadata = read_metadata(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY]) == metadata
    plans = json.loads((model_dir / "plans.json").read_text(encoding="utf-8"))
    dataset = json.loads((model_dir / "dataset.json").read_text(encoding="utf-8"))
    config = plans["configurations"]["2d"]
    checkpoint = read_nnunet_checkpoint(model_dir / "fold_0" / "checkpoint_final.pth")

    assert metadata["input"] == {
        "name": "image", "shape": ["batch", 1, *PATCH], "dtype": "float32", "channel_names": dataset["channel_names"]
    }
    output = metadata["output"]
    assert output["shape"] == ["batch", NUM_CLASSES, *PATCH] and output["labels"] == dataset["labels"]
    assert output["activation"] == "softmax over axis 1" and output["argmax_is_label_value"]
    assert metadata["model"] | {"network": None} == {
        "dataset": plans["dataset_name"], "plans": "nnUNetPlans", "configuration": "2d", "trainer": "DINOv3Trainer",
        "fold": 0, "checkpoint": "checkpoint_final.pth", "network": None, "precision": metadata["model"]["precision"],
    }
    assert metadata["model"]["network"]["backbone"] == config["meddinov3"]["backbone"]
    preprocessing = metadata["preprocessing"]
    assert preprocessing["spacing"] == config["spacing"]
    assert (preprocessing["transpose_forward"], preprocessing["transpose_backward"]) == (
        plans["transpose_forward"], plans["transpose_backward"]
    )
    assert preprocessing["resampling"]["data_kwargs"] == config["resampling_fn_data_kwargs"]
    assert metadata["inference"]["patch_size"] == list(PATCH)
    assert metadata["inference"]["mirroring_axes"] == list(checkpoint["inference_allowed_mirroring_axes"])

    # The normalisation the metadata states is the one nnU-Net applies.
    (channel,) = preprocessing["normalization"]
    assert (channel["scheme"], channel["use_mask_for_norm"]) == ("CTNormalization", False)
    intensities = plans["foreground_intensity_properties_per_channel"]["0"]
    assert channel["foreground_intensity_properties"] == intensities
    image = np.random.default_rng(0).uniform(-2000, 3000, (2, 16, 16)).astype(np.float32)
    expected = CTNormalization(False, intensities).run(image.copy())
    stated = (np.clip(image, *channel["clip"]) - channel["mean"]) / max(channel["std"], 1e-8)
    np.testing.assert_allclose(stated, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "exported",
    # Dino U-Net: grid_sample, a padded input (RoPE on a larger grid than the patch's), bfloat16 autocast.
    ["nnunet", pytest.param("segformer", marks=pytest.mark.slow), pytest.param("dino-unet", marks=pytest.mark.slow)],
    indirect=True,
)
def test_baseline_networks_export_too(exported):
    """Dino U-Net runs its frozen ViT under bfloat16 autocast: PyTorch's fused CPU attention keeps
    its scores in float32 where the exported graph rounds them to bfloat16 (ViT maps 2.9e-4 apart,
    logits 1e-6 to 1.6e-4 depending on the input, measured), so it gets the bound of bf16 paths."""
    model_dir, path = exported
    bound = BF16_ROPE_TOL if "DinoUNet" in model_dir.name else FLOAT32_EXPORT_TOL
    images = torch.randn(2, 1, *PATCH, generator=torch.Generator().manual_seed(0))
    assert relative_error(onnx_logits(path, images), torch_logits(model_dir, images)) <= bound
