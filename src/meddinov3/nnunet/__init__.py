"""nnU-Net v2 integration: the 2d_<size> plan, trainers (plugins, not a fork), training and prediction.

Modules import nnU-Net lazily where they can; `trainers` imports it at the top (it subclasses
nnU-Net's trainer), so import it only when training or predicting.
"""
