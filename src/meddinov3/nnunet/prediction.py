"""Segment new volumes with a trained model folder, through nnU-Net's predictor.

nnU-Net's `initialize_from_trained_model_folder` finds the trainer class by importing every
nnU-Net trainer module (one needs timm) and unpickles checkpoints with `weights_only=False`.
Here the network and weights come from `model_folder.load_trained_model` (rebuilt from the
folder's plans by the trainer's own static builder, checkpoints read with `weights_only=True`),
and the predictor is set up with `manual_initialization`. Preprocessing, sliding-window
inference (Gaussian weighting, mirroring) and export back to the input geometry are nnU-Net's
steps, run on the prediction device by `meddinov3.nnunet.inference` (shared with
`meddinov3.Segmenter`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

from meddinov3.datasets import read_dataset_json
from meddinov3.folders import STALE_SUFFIX, mark_stale, writable_folder
from meddinov3.nnunet.label_maps import remove_leftovers, unfinished, write_label_map
from meddinov3.nnunet.model_folder import load_trained_model, model_checkpoints
from meddinov3.nnunet.prediction_inputs import (
    Case,
    check_inputs,
    check_output_folder,
    collect_cases,
    existing_input,
)


def load_predictor(
    model_dir: str | os.PathLike,
    folds: Sequence[int | str] = (0,),
    checkpoint_name: str = "checkpoint_final.pth",
    device: str = "auto",
    tile_step_size: float = 0.5,
    use_mirroring: bool = True,
) -> Any:
    """An nnUNetPredictor holding the model folder's network and one parameter set per fold."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from meddinov3.devices import pick_device

    model = load_trained_model(model_dir, folds, checkpoint_name)
    torch_device = pick_device(device)
    predictor = nnUNetPredictor(
        tile_step_size=tile_step_size,
        use_gaussian=True,
        use_mirroring=use_mirroring,
        perform_everything_on_device=torch_device.type == "cuda",
        device=torch_device,
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        model.network,
        model.plans_manager,
        model.configuration_manager,
        model.parameters,
        model.dataset_json,
        model.trainer_name,
        model.mirroring_axes,
    )
    return predictor


def prediction_precision(predictor: Any, requested: str | None = None) -> str | None:
    """`requested`, else the precision the model was trained at (recorded in its network spec),
    else None: nnU-Net's own choice, for models without a record (fp16 autocast on CUDA)."""
    from meddinov3.nnunet.spec import spec_in_configuration
    from meddinov3.precision import default_precision, resolve_precision

    if requested is not None:
        return resolve_precision(requested, predictor.device)
    spec = spec_in_configuration(predictor.configuration_manager.configuration)
    if spec is None or spec.precision is None:
        return None
    try:
        return resolve_precision(spec.precision, predictor.device)
    except ValueError:  # trained in bf16, predicted on a GPU without it
        return default_precision(predictor.device)


def _segment_case(case_predictor: Any, case: Case, output: Path, ending: str) -> None:
    predictor = case_predictor.predictor
    reader_writer = predictor.plans_manager.image_reader_writer_class()
    data, properties = reader_writer.read_images(case.files)
    segmentation = case_predictor.labels(data, properties["spacing"])
    write_label_map(reader_writer, segmentation, properties, output, ending)


def _done(case: Case, output: Path) -> bool:
    """Whether an earlier run finished `case`: its label map is there, whole, on the scan's grid."""
    if not output.exists():
        return False
    problem = unfinished(output, case.files[0])
    if problem:
        print(f"note: redoing case {case.name}: its label map {output} is incomplete or not its scan's ({problem})",
              file=sys.stderr)
    return problem is None


def predict(
    input_path: str | os.PathLike,
    output_folder: str | os.PathLike,
    model_dir: str | os.PathLike,
    folds: Sequence[int | str] = (0,),
    checkpoint_name: str = "checkpoint_final.pth",
    device: str = "auto",
    overwrite: bool = False,
    use_mirroring: bool = True,
    tile_step_size: float = 0.5,
    show_progress: bool = True,
    precision: str | None = None,
) -> list[Path]:
    """Segment every case under `input_path` into `output_folder`/<case><file ending>.

    Paths, the output folder and every input file are checked before torch and nnU-Net load.
    Existing outputs are kept unless `overwrite`, so an interrupted run continues where it
    stopped; with `overwrite`, an earlier label map is renamed *.stale until its case is redone.
    `precision` None: the model's own (see `prediction_precision`). Returns the written label maps.
    """
    from rich.progress import Progress

    source = existing_input(input_path)
    model_checkpoints(model_dir, folds, checkpoint_name)
    out = writable_folder(output_folder, "--output")
    check_output_folder(source, out)
    description = read_dataset_json(model_dir)
    ending = description.raw["file_ending"]
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="meddinov3_predict_")))
        cases = collect_cases(input_path, description.num_channels, scratch)
        todo = [case for case in cases if overwrite or not _done(case, out / f"{case.name}{ending}")]
        check_inputs(todo)
        if todo:
            from meddinov3.nnunet.inference import CasePredictor

            predictor = load_predictor(model_dir, folds, checkpoint_name, device, tile_step_size, use_mirroring)
            precision = prediction_precision(predictor, precision)
            print(f"predicting on {predictor.device.type} ({precision or 'nnU-Net default precision'})")
            case_predictor = CasePredictor(predictor, precision)
        # With overwrite, an earlier label map stays only as *.stale until its case is redone.
        mark_stale(out, [f"{case.name}{ending}" for case in todo])
        progress = stack.enter_context(Progress(disable=not show_progress))
        task = progress.add_task("segmenting", total=len(todo))
        for case in todo:
            remove_leftovers(out / f"{case.name}{ending}", ending)
            _segment_case(case_predictor, case, out / f"{case.name}{ending}", ending)
            (out / f"{case.name}{ending}{STALE_SUFFIX}").unlink(missing_ok=True)
            progress.advance(task)
    return [out / f"{case.name}{ending}" for case in cases]
