"""`meddinov3 export`: a trained model's network as an ONNX file, for serving outside PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer

from meddinov3.cli_errors import errors_as_one_line
from meddinov3.errors import InputError


def _require_exporter() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (torch.onnx's exporter translates through it)
    except ImportError as error:
        raise InputError(
            f"ONNX export needs the onnx and onnxscript packages ({error}): pip install 'meddinov3[export]'"
        ) from None


def export(
    model: Path = typer.Argument(..., help="Trained model folder (<Trainer>__<plans>__<config>), as for predict -m."),
    onnx: Path = typer.Option(..., "--onnx", help="ONNX file to write (replaced atomically if it exists)."),
    fold: str = typer.Option("0", "--fold", help="Fold whose weights to export (a number or 'all' for fold_all)."),
    checkpoint: str = typer.Option("checkpoint_final.pth", help="Checkpoint file name inside the fold."),
) -> None:
    """Export the network of one fold as ONNX (opset 18, float32): input (batch, channels, H, W) at the
    plan's patch size with a dynamic batch axis, output the logits.

    The file's metadata (key `meddinov3`, JSON) says how to feed it as nnU-Net does: axis order,
    target spacing, intensity normalisation with its parameters, patch size, labels, mirroring.
    """
    from meddinov3.nnunet.commands import fold_value

    with errors_as_one_line(ValueError):
        fold_number = fold_value(fold)
    with errors_as_one_line():
        _require_exporter()
        from meddinov3.export.onnx_file import export_onnx

        written = export_onnx(model, onnx, fold_number, checkpoint)
    typer.echo(f"wrote {written}")
