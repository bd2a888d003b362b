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
import re
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from meddinov3.errors import InputError
from meddinov3.datasets import read_dataset_json
from meddinov3.images import read_image
from meddinov3.images.dicom import DicomSeries, find_dicom_series, read_dicom_series
from meddinov3.folders import STALE_SUFFIX, mark_stale, writable_folder
from meddinov3.nnunet.model_folder import load_trained_model, model_checkpoints

NIFTI_ENDINGS = (".nii.gz", ".nii")
_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class PredictionInputError(InputError, ValueError):
    """Input files that cannot be segmented as given; the message names them."""


@dataclass
class Case:
    name: str
    files: list[str]  # one file per input channel, in channel order


def _strip_nifti_ending(filename: str) -> str | None:
    for ending in NIFTI_ENDINGS:
        if filename.endswith(ending):
            return filename[: -len(ending)]
    return None


def _nifti_cases(files: Sequence[Path], num_channels: int) -> list[Case]:
    """Group NIfTI files into cases by nnU-Net's `CASE_XXXX` channel naming (needed for several
    channels); for one channel, `CASE_0000` files are named CASE and any other file by its stem."""
    stems = {f: _strip_nifti_ending(f.name) for f in files}
    channel_named = {f: _CHANNEL_SUFFIX.match(s) for f, s in stems.items()}
    all_channel_zero = all(m is not None and int(m["channel"]) == 0 for m in channel_named.values())
    if num_channels > 1 or all_channel_zero:
        cases: dict[str, dict[int, str]] = {}
        for f, match in channel_named.items():
            if match is None:
                raise PredictionInputError(
                    f"{f}: the model takes {num_channels} channels; name inputs CASE_0000.nii.gz ... "
                    f"CASE_{num_channels - 1:04d}.nii.gz"
                )
            cases.setdefault(match["case"], {})[int(match["channel"])] = str(f)
        result = []
        for name, channels in sorted(cases.items()):
            if sorted(channels) != list(range(num_channels)):
                raise PredictionInputError(
                    f"case {name!r}: found channels {sorted(channels)}, the model needs 0..{num_channels - 1}"
                )
            result.append(Case(name, [channels[c] for c in range(num_channels)]))
        return result
    return [Case(stems[f], [str(f)]) for f in sorted(files)]


def _dicom_to_nifti(series: DicomSeries, target: Path) -> None:
    import SimpleITK as sitk

    image, _ = read_dicom_series(series)
    sitk.WriteImage(image, str(target), True)


def existing_input(input_path: str | os.PathLike) -> Path:
    path = Path(input_path)
    if not path.exists():
        raise PredictionInputError(f"{path}: no such file or folder")
    return path


def collect_cases(input_path: str | os.PathLike, num_channels: int, scratch: Path) -> list[Case]:
    """Cases from a NIfTI file, a folder of NIfTI files, or a DICOM series folder.

    DICOM series are converted to NIfTI in `scratch` first (geometry kept); a folder holding
    several series gives one case per series.
    """
    path = existing_input(input_path)
    if path.is_file():
        if _strip_nifti_ending(path.name) is None:
            raise PredictionInputError(f"{path}: expected a NIfTI file (.nii or .nii.gz) or a DICOM series folder")
        return _nifti_cases([path], num_channels)
    niftis = [f for f in path.iterdir() if f.is_file() and _strip_nifti_ending(f.name) is not None]
    if niftis:
        return _nifti_cases(niftis, num_channels)
    series = find_dicom_series(path)
    if not series:
        raise PredictionInputError(f"{path}: contains neither NIfTI files nor a DICOM series")
    if num_channels != 1:
        raise PredictionInputError(f"{path}: DICOM input supports single-channel models, this one takes {num_channels}")
    cases = []
    for one in series:
        name = path.name if len(series) == 1 else f"{path.name}_{one.uid}"
        target = scratch / f"{name}.nii.gz"
        _dicom_to_nifti(one, target)
        cases.append(Case(name, [str(target)]))
    return cases


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


def _segment_case(case_predictor: Any, case: Case, output: Path) -> None:
    predictor = case_predictor.predictor
    data, properties = predictor.plans_manager.image_reader_writer_class().read_images(case.files)
    segmentation = case_predictor.labels(data, properties["spacing"])
    partial = output.with_name(f".partial_{output.name}")
    predictor.plans_manager.image_reader_writer_class().write_seg(segmentation, str(partial), properties)
    os.replace(partial, output)


def check_inputs(cases: Sequence[Case]) -> None:
    """Read every input file whole (see `meddinov3.images`) before the model is loaded: a bad
    file stops the run naming it, before any output is written."""
    for case in cases:
        for file in case.files:
            read_image(file)


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

    existing_input(input_path)
    model_checkpoints(model_dir, folds, checkpoint_name)
    out = writable_folder(output_folder, "--output")
    description = read_dataset_json(model_dir)
    ending = description.raw["file_ending"]
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="meddinov3_predict_")))
        cases = collect_cases(input_path, description.num_channels, scratch)
        todo = [case for case in cases if overwrite or not (out / f"{case.name}{ending}").exists()]
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
            _segment_case(case_predictor, case, out / f"{case.name}{ending}")
            (out / f"{case.name}{ending}{STALE_SUFFIX}").unlink(missing_ok=True)
            progress.advance(task)
    return [out / f"{case.name}{ending}" for case in cases]
