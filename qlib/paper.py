"""The papers' numbers, copied from their tables (one home; the book always labels them as the paper's)."""
from __future__ import annotations

PAPER_TABLE1 = {  # (method, W-E-A): (size MB, WikiText2, PTB, WikiText103, Persona-Chat acc)
    ("fp", "fp32"): (474.9, 14.48, 14.72, 14.19, 77.01),
    ("pact", "8-8-8"): (121.4, 17.49, 16.11, 16.76, 74.73),
    ("lsq", "8-8-8"): (121.4, 16.75, 15.43, 15.24, 75.28),
    ("laq", "8-8-8"): (121.4, 16.91, 15.87, 15.88, 76.02),
    ("mds", "8-8-8"): (121.4, 15.31, 14.90, 14.58, 76.12),
    ("pact", "4-4-8"): (62.4, 19.23, 20.17, 20.15, 25.13),
    ("lsq", "4-4-8"): (62.4, 78.99, 79.76, 75.12, 45.10),
    ("laq", "4-4-8"): (62.4, 17.12, 16.55, 16.91, 71.71),
    ("mds", "4-4-8"): (62.4, 15.55, 14.95, 15.31, 76.57),
    ("pact", "2-2-8"): (33.0, 173.02, 189.13, 171.03, 5.52),
    ("lsq", "2-2-8"): (33.0, 847.54, 544.98, 1470.86, 5.54),
    ("laq", "2-2-8"): (33.0, 19.15, 18.25, 18.97, 71.36),
    ("mds", "2-2-8"): (33.0, 17.30, 16.12, 16.98, 74.78),
}
PAPER_PTB_TEACHER = PAPER_TABLE1[("fp", "fp32")][2]
PAPER_TABLE4_PTB = {"mds-228": 16.12, "mds-228-teacher-bank": 16.51, "mds-228-bank": 16.54,
                    "mds-228-global": 16.63, "mds-228-sequence": 19.23}
PAPER_TABLE6_PTB = {"mds-228": 16.12, "mds-228-first-layer": 16.61}  # decoder-last (QuantGPT), decoder-first
PAPER_NEGATIVES_LAYER_PTB = {**PAPER_TABLE4_PTB, **PAPER_TABLE6_PTB}  # the book's one table of negatives and layer
PAPER_TABLE5 = {"dist": {"sec_per_iter": 0.61, "memory_mb": 14700, "ptb_ppl": 16.93},
                "dist+cont": {"sec_per_iter": 0.67, "memory_mb": 14839, "ptb_ppl": 16.12}}
PAPER_TABLE7_PTB = {"mds-228": 16.12, "mds-228-dist-only": 16.93, "mds_pact_grad-228-dist-only": 17.78}
PAPER_TABLE3 = {  # (method, W-E-A): (size MB, XSum test R1, R2, RL) with BART-base
    ("fp", "fp32"): (532.0, 40.75, 18.10, 33.05),
    ("pact", "8-8-8"): (138.1, 39.16, 16.60, 31.60), ("lsq", "8-8-8"): (138.1, 39.09, 16.72, 31.56),
    ("laq", "8-8-8"): (138.1, 39.10, 16.74, 31.65), ("mds", "8-8-8"): (138.1, 40.25, 17.78, 32.70),
    ("pact", "4-4-8"): (72.4, 32.68, 11.52, 26.03), ("lsq", "4-4-8"): (72.4, 38.94, 16.48, 31.46),
    ("laq", "4-4-8"): (72.4, 39.03, 16.68, 31.63), ("mds", "4-4-8"): (72.4, 40.24, 17.71, 32.69),
    ("pact", "2-2-8"): (39.6, 7.76, 1.30, 6.96), ("lsq", "2-2-8"): (39.6, 37.09, 14.88, 29.76),
    ("laq", "2-2-8"): (39.6, 37.48, 15.27, 30.13), ("mds", "2-2-8"): (39.6, 39.15, 16.72, 31.72),
}
PAPER_XSUM = {"fp": PAPER_TABLE3[("fp", "fp32")][1:], "mds 2-2-8": PAPER_TABLE3[("mds", "2-2-8")][1:]}
PAPER_XTC_MNLI = [  # XTC's headline numbers (BERT-base, MNLI-m/mm accuracy), from its paper
    {"model": "BERT-base baseline (12L, fp32)", "MNLI-m/mm": "84.9 / 85.6"},
    {"model": "12L, 1-bit (XTC)", "MNLI-m/mm": "84.1 / 84.0"},
    {"model": "6L, 1-bit (XTC)", "MNLI-m/mm": "82.9 / 83.6"},
    {"model": "5L, 2-bit (XTC)", "MNLI-m/mm": "83.3 / 84.1"},
]
PAPER_SIZES = {  # the Size columns (MB) of Tables 1-3 (GPT-2 small, BART-base) and of Table 9 (24-layer GPT-2 and
    # BART-large; Table 9 gives no full-precision size), at fp32 and W 8/4/2 bits
    "gpt2-small": {"fp32": 474.9, 8: 121.4, 4: 62.4, 2: 33.0},
    "bart-base": {"fp32": 532.0, 8: 138.1, 4: 72.4, 2: 39.6},
    "gpt2-medium": {"fp32": None, 8: 342.5, 4: 174.0, 2: 89.7},
    "bart-large": {"fp32": None, 8: 394.8, 4: 202.2, 2: 106.0},
}
