"""clipsr_export: a trained CLIP-SR model -> the model folder the torch-free runtime reads
(docs/model-folder.md), checked against PyTorch.

Modules, one job each: `onnx_export` (trace the two stages), `fp16` (mixed-precision copies), `parity`
(ONNX Runtime vs PyTorch), `tensorrt` (engines named by the runtime's cache key), `manifest`
(model.json), `writer` (all-or-nothing output folder), `pipeline` (all of it in order), `cli`
(`clipsr-export`).
"""
