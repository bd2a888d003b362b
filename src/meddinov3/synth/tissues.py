"""Tissue classes painted into a synthetic plane, and the segmentation labels written out.

Tissues are finer than labels: a kidney is cortex, medulla, sinus fat and pelvis; a stomach is
wall, fluid and gas. Unlabelled anatomy (bowel, pancreas, gallbladder, ribs, heart, lungs,
muscles, fat) is background in the labels, as in real multi-organ datasets.
"""

from __future__ import annotations

from enum import IntEnum


class Tissue(IntEnum):
    AIR = 0
    SKIN = 1
    SUBCUTANEOUS_FAT = 2
    MUSCLE = 3
    VISCERAL_FAT = 4
    BOWEL = 5
    BOWEL_GAS = 6
    STOOL = 7
    LUNG = 8
    LUNG_VESSEL = 9
    HEART_MUSCLE = 10
    HEART_BLOOD = 11
    LIVER = 12
    LIVER_VESSEL = 13
    GALLBLADDER = 14
    SPLEEN = 15
    KIDNEY_CORTEX = 16
    KIDNEY_MEDULLA = 17
    RENAL_SINUS_FAT = 18
    RENAL_PELVIS = 19
    AORTA = 20
    IVC = 21
    PANCREAS = 22
    STOMACH_WALL = 23
    STOMACH_FLUID = 24
    STOMACH_GAS = 25
    BONE_CORTICAL = 26
    BONE_CANCELLOUS = 27
    DISC = 28
    SPINAL_CANAL = 29
    RIB = 30
    TABLE_SHELL = 31
    TABLE_FOAM = 32


LABELS: dict[str, int] = {
    "background": 0,
    "liver": 1,
    "spleen": 2,
    "kidney_left": 3,
    "kidney_right": 4,
    "aorta": 5,
    "stomach": 6,
    "vertebrae": 7,
}
