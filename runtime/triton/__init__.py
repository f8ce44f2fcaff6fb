"""Serving clipsr on NVIDIA Triton Inference Server: a model repository writer (`clipsr-triton`), the
Python-backend steps it points at, and the client behind `clipsr-run --server URL`.

Needs the `serve` extra (tritonclient; nvidia-pytriton for a local server binary) only for the client
and the tests; writing a repository needs nothing beyond the runtime.
"""
