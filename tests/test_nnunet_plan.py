"""The 2d_<size> configuration: derived from the planned 2d one exactly as the release describes,
and resolved by nnU-Net's own plans handling. (The full plan + preprocess run is exercised in
test_nnunet_end_to_end.py.)"""

import copy
import os

import pytest

from meddinov3.nnunet.paths import NnUNetSetupError, require_folders, set_process_counts
from meddinov3.nnunet.plans import highres_configuration, with_highres_configuration


ARCHITECTURE = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {},
    "_kw_requires_import": [],
}


def _plans() -> dict:
    return {
        "plans_name": "nnUNetPlans",
        "dataset_name": "Dataset001_Test",
        "configurations": {
            "2d": {
                "data_identifier": "nnUNetPlans_2d",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 12,
                "patch_size": [512, 448],
                "median_image_size_in_voxels": [512.0, 512.0],
                "spacing": [0.78125, 0.78125],
                "normalization_schemes": ["CTNormalization"],
                "architecture": ARCHITECTURE,
            },
            "3d_fullres": {"patch_size": [64, 160, 160], "spacing": [2.0, 0.8, 0.8], "batch_size": 2,
                           "median_image_size_in_voxels": [100.0, 512.0, 512.0], "architecture": ARCHITECTURE},
        },
    }


def test_release_formula_for_the_896_configuration():
    """new spacing = 2d spacing x (2d patch size / 896), per axis; the release's README example."""
    config = highres_configuration(_plans(), 896)
    assert config["inherits_from"] == "2d"
    assert config["data_identifier"] == "nnUNetPlans_2d_896"
    assert config["patch_size"] == [896, 896]
    assert config["spacing"] == pytest.approx([0.78125 * 512 / 896, 0.78125 * 448 / 896])
    assert config["spacing"][0] == pytest.approx(0.4464285714285714)  # the README's number
    # Same field of view in more pixels.
    assert config["median_image_size_in_voxels"] == pytest.approx([896.0, 1024.0])
    assert config["batch_size"] == 12


def test_batch_size_override_and_inherited_fields():
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = with_highres_configuration(_plans(), 640, batch_size=4)
    resolved = PlansManager(plans).get_configuration("2d_640")
    assert resolved.batch_size == 4
    assert resolved.patch_size == [640, 640]
    assert resolved.normalization_schemes == ["CTNormalization"]  # inherited from 2d
    assert resolved.data_identifier == "nnUNetPlans_2d_640"


def test_original_plans_are_not_modified():
    plans = _plans()
    before = copy.deepcopy(plans)
    new = with_highres_configuration(plans, 896)
    assert plans == before and "2d_896" in new["configurations"]


@pytest.mark.parametrize("size", [0, 100, 900])
def test_size_must_be_a_multiple_of_the_vit_patch(size):
    with pytest.raises(ValueError, match="multiple of the ViT patch size 16"):
        highres_configuration(_plans(), size)


def test_base_must_be_a_2d_configuration():
    with pytest.raises(NnUNetSetupError, match="not 2D"):
        highres_configuration(_plans(), 896, base="3d_fullres")
    with pytest.raises(NnUNetSetupError, match="not in the plans"):
        highres_configuration(_plans(), 896, base="2d_lowres")


def test_unset_nnunet_folders_are_named(monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    monkeypatch.setenv("nnUNet_preprocessed", "/somewhere")
    with pytest.raises(NnUNetSetupError, match="export nnUNet_raw=") as err:
        require_folders("nnUNet_raw", "nnUNet_preprocessed")
    assert "nnUNet_preprocessed" not in str(err.value)


def test_process_counts(monkeypatch):
    monkeypatch.delenv("nnUNet_def_n_proc", raising=False)
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    set_process_counts(None)
    assert "nnUNet_def_n_proc" not in os.environ
    set_process_counts(0)
    assert (os.environ["nnUNet_def_n_proc"], os.environ["nnUNet_n_proc_DA"]) == ("1", "0")
