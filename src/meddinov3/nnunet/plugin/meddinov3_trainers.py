"""Every trainer of `meddinov3 train --method ...`, where nnU-Net's `nnUNet_extTrainer` search
looks for a trainer class by name (it imports this file as a top-level module)."""

from meddinov3.nnunet.methods import METHODS
from meddinov3.nnunet.trainer_classes import trainer_class

globals().update({method.trainer: trainer_class(method.trainer) for method in METHODS.values()})
