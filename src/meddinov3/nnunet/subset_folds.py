"""How a subset of a fold's training cases trains inside nnU-Net without touching the user's runs.

nnU-Net decides a fold's training and validation cases from `splits_final.json` (one entry per
fold index). A subset run gets an entry of its own, appended after the existing ones (index 5
and up for nnU-Net's 5-fold split): training on the subset, validating on the fold's held-out
cases. Entries 0-4 stay as they are, so every cross-validation fold keeps its cases, and
`nnUNetv2_train` with the same index and plans reproduces a subset run. An entry is found again
by its content, so reruns reuse its index.

The subset runs train under a plans identifier of their own (`<plans>_labelsubsets`, a copy of
the plans that differs only in its name and so reads the same preprocessed data): their fold
folders live in a separate model folder, never next to folds 0-4, where nnU-Net's prediction
without `-f` would put them into the 5-fold ensemble. Each subset fold folder records the cases
it trains on (`train_cases.json`); a folder that records other cases is refused, not reused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from meddinov3.io import atomic_write_text
from meddinov3.nnunet.paths import PREPROCESSED, NnUNetSetupError, require_folders

SPLITS_FILE = "splits_final.json"
SUBSET_PLANS_SUFFIX = "_labelsubsets"
FOLD_RECORD = "train_cases.json"


def preprocessed_folder(dataset_name: str) -> Path:
    return require_folders(PREPROCESSED)[PREPROCESSED] / dataset_name


def read_splits(dataset_name: str) -> list[dict]:
    path = preprocessed_folder(dataset_name) / SPLITS_FILE
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise NnUNetSetupError(f"{path}: cannot read nnU-Net's splits ({error})") from error
    if not isinstance(splits, list) or not all(isinstance(s, dict) and {"train", "val"} <= set(s) for s in splits):
        raise NnUNetSetupError(f"{path}: not nnU-Net's splits (a list of {{'train': [...], 'val': [...]}})")
    return splits


def ensure_crossval_split(dataset_name: str, plans_identifier: str, configuration: str) -> Path:
    """`splits_final.json` as nnU-Net's trainer writes it when the first fold trains, if it is missing:
    its 5-fold split (generate_crossval_split's defaults, seed 12345, as in nnUNetTrainer.do_split)
    of the cases preprocessed for `configuration`."""
    import numpy as np
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    from meddinov3.nnunet.plans import load_plans, resolved_configuration

    path = preprocessed_folder(dataset_name) / SPLITS_FILE
    if path.is_file():
        return path
    plans = load_plans(dataset_name, plans_identifier)
    data = preprocessed_folder(dataset_name) / resolved_configuration(plans, configuration)["data_identifier"]
    if not data.is_dir():
        raise NnUNetSetupError(f"{data}: no preprocessed data; run `meddinov3 plan {dataset_name}` first")
    identifiers = [str(key) for key in np.sort(infer_dataset_class(str(data)).get_identifiers(str(data)))]
    splits = generate_crossval_split(identifiers)
    atomic_write_text(path, json.dumps([{k: [str(c) for c in v] for k, v in s.items()} for s in splits], indent=4))
    return path


def fold_for_split(dataset_name: str, train: Sequence[str], val: Sequence[str]) -> int:
    """The index of the splits entry that trains on `train` and validates on `val`, appended if none does."""
    splits = read_splits(dataset_name)
    wanted = (sorted(train), sorted(val))
    for index, entry in enumerate(splits):
        if (sorted(entry["train"]), sorted(entry["val"])) == wanted:
            return index
    splits.append({"train": wanted[0], "val": wanted[1]})
    atomic_write_text(preprocessed_folder(dataset_name) / SPLITS_FILE, json.dumps(splits, indent=4))
    return len(splits) - 1


def subset_plans_identifier(plans_identifier: str) -> str:
    return f"{plans_identifier}{SUBSET_PLANS_SUFFIX}"


def write_subset_plans(dataset_name: str, plans_identifier: str) -> str:
    """The copy of the plans the subset runs train with (rewritten when the plans changed)."""
    from meddinov3.nnunet.plans import load_plans, plans_path

    identifier = subset_plans_identifier(plans_identifier)
    plans = load_plans(dataset_name, plans_identifier)
    plans["plans_name"] = identifier  # only the name: data_identifier keeps pointing at the same arrays
    text = json.dumps(plans, indent=4)
    path = plans_path(dataset_name, identifier)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return identifier


def claim_fold_folder(folder: Path, train: Sequence[str], val: Sequence[str]) -> None:
    """Record which cases the run in `folder` trains on; refuse a folder that trained on others."""
    record = {"train": sorted(train), "val": sorted(val)}
    path = folder / FOLD_RECORD
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise NnUNetSetupError(f"{path}: unreadable ({error}); move {folder} away to train it again") from error
        if found != record:
            raise NnUNetSetupError(
                f"{folder} trained on other cases than this subset ({path}: {found['train']}, not {record['train']});"
                " nnU-Net's splits_final.json was changed: move the folder away to train it again"
            )
        return
    if any(folder.glob("checkpoint_*.pth")):
        raise NnUNetSetupError(f"{folder} holds a run that does not record its training cases ({FOLD_RECORD}); move it away")
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
