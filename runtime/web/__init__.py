"""clipsr-web: a page to try captions on an image (Gradio, extra `web`), on the torch-free runtime.

`clipsr_runtime.web.app` builds the page, `clipsr_runtime.web.pool` holds one upscaler per model folder,
`clipsr_runtime.web.cli` is the command. Nothing here imports gradio until the page is built.
"""
