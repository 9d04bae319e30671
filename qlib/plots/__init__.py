"""Figures of the book, by what they show. Each function returns a matplotlib Figure; the notebooks only call them.

No backend is forced here: in a notebook the inline backend shows every figure a cell makes (forcing Agg would
leave the book without figures); headless scripts get Agg by matplotlib's own choice.
"""
from .ablations import grad_share_plot, long_curves_plot
from .common import PlainLogFormatter, columns, log_y, method_color
from .curves import learning_curves, metric_vs_bits, negatives_plot
from .diagrams import negatives_diagram, workflow_diagram
from .maps import embedding_maps, similarity_maps
from .quantizers import gamma_gradient, gammas, quantizer_grid, weight_distribution
from .summary import ratio_summary
