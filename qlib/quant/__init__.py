"""Weight and activation quantizers, one module each, registered by name in ``QUANTIZERS`` as they are defined.

``base``: the grid, ``Encoded``, the straight-through estimator and ``WeightQuantizer``; ``uniform``: min-max and
QuantGPT's dynamic scaling; ``pact``, ``lsq``, ``laq``: the baselines; ``ternary``: XTC's TWN and BWN;
``activations``: the per-token activation quantizer. Importing this package registers every quantizer.
"""
from .base import (GRANULARITIES, QUANTIZERS, Encoded, StraightThrough, WeightQuantizer, check_bits, dequantize,
                   group_reduce, group_sum, levels, make_quantizer, uniform_codes)
from .uniform import MDSPactGradQuantizer, MDSQuantizer, MinMaxQuantizer
from .pact import PACTClipGridQuantizer, PACTQuantizer
from .lsq import LSQQuantizer
from .laq import LAQQuantizer, bind_laq_hessians
from .ternary import BWNQuantizer, TWNQuantizer
from .activations import ActQuantizer

__all__ = ["GRANULARITIES", "QUANTIZERS", "Encoded", "StraightThrough", "WeightQuantizer", "check_bits", "dequantize",
           "group_reduce", "group_sum", "levels", "make_quantizer", "uniform_codes", "MinMaxQuantizer", "MDSQuantizer",
           "MDSPactGradQuantizer", "PACTQuantizer", "PACTClipGridQuantizer", "LSQQuantizer", "LAQQuantizer",
           "bind_laq_hessians", "TWNQuantizer", "BWNQuantizer", "ActQuantizer"]
