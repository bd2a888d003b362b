"""`meddinov3 demo`: the whole MedDINOv3 pipeline on synthetic CT in one command.

    from meddinov3.demo.config import demo_config
    from meddinov3.demo.pipeline import run_demo
    run_demo("demo_out", demo_config("small"))   # -> demo_out/report.html

Steps (pipeline.py): synthesize CT -> curate a slice corpus -> stage-1 pretraining -> nnU-Net
plan -> fine-tune from the pretrained and from a random backbone -> predict the held-out cases ->
DSC / NSD -> feature maps of the real CT slice -> a self-contained HTML report. Run it in a fresh
process: nnU-Net's folders are set to OUT/nnUNet_* before nnU-Net is imported.
"""
