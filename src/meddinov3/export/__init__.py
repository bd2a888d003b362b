"""A trained model's network for serving outside PyTorch: `meddinov3 export MODEL --onnx FILE`.

`onnx_file.export_onnx` writes it; `metadata.read_metadata` reads back how to feed it.
"""
