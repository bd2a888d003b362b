"""Public dataset releases (AMOS22, BTCV, KiTS23, LiTS) -> nnU-Net v2 raw datasets.

Each release keeps its own folder layout and label set; one module per release finds its cases
and states its labels, and `write_dataset` turns that into `DatasetXXX_Name/` with dataset.json.
"""

from meddinov3.convert.errors import ConversionError
from meddinov3.convert.registry import CONVERTERS, convert_release

__all__ = ["CONVERTERS", "ConversionError", "convert_release"]
