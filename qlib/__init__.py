"""qlib: quantization-aware training of pre-trained transformers (QuantGPT / QuantBART and XTC)."""
from .modules import QuantConfig, dequantized_state_dict, quantize_model, quantizer_parameters
from .quant import QUANTIZERS, MDSQuantizer, make_quantizer

__version__ = "0.1.0"
from .packing import export_packed, load_packed, size_mb, size_table
