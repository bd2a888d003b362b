"""Synthetic abdominal CT in nnU-Net format: anatomy shapes, Hounsfield units, dataset writer.

    from meddinov3.synth.case import generate_case
    case = generate_case(seed=0, index=0)      # case.image int16 HU, case.label uint8 (Z, Y, X)

or from the shell: ``meddinov3 synth $nnUNet_raw/Dataset501_SynthAbdomen --cases 20``.
"""
