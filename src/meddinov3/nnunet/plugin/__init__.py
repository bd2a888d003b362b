"""Folder for nnU-Net's `nnUNet_extTrainer` plugin path.

nnU-Net (>= 2.6) searches the folders listed in `nnUNet_extTrainer` for a trainer class when
`nnUNetv2_train -tr NAME` (or `nnUNetv2_predict`) names one it does not ship. Point it here:

    export nnUNet_extTrainer=$(python -c "import meddinov3.nnunet.plugin as p; print(p.PLUGIN_DIR)")
    export MEDDINOV3_WEIGHTS=/path/to/MedDINOv3-B-CT3M.pth
    nnUNetv2_train DATASET 2d_896 0 -tr MedDINOv3Trainer

nnU-Net imports every module in the folder as a top-level module; `meddinov3_trainers.py`
re-exports the trainer classes.
"""

from pathlib import Path

PLUGIN_DIR = str(Path(__file__).resolve().parent)
