"""File datasets (by name: `clipsr.datasets.build_dataset`) and the MATLAB-style bicubic degradation
(`clipsr.data.resize`). Kept import-free so the resize helpers load without torch."""
