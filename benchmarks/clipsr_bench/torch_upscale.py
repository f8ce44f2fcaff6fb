"""The PyTorch path of one upscale, as a user of the `clipsr` package would write it, run as a child
process by processes.py: `python torch_upscale.py CHECKPOINT LR_IMAGE PROMPT OUT THREADS`."""
from __future__ import annotations

import logging
import sys


def main(checkpoint: str, image: str, prompt: str, out: str, threads: str) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from clipsr.factory import create_model
    from clipsr.inference import super_resolve, to_uint8

    logging.getLogger().setLevel(logging.ERROR)
    torch.set_num_threads(int(threads))
    model = create_model(checkpoint).eval()
    rgb = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32) / 127.5 - 1
    lr = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    Image.fromarray(to_uint8(super_resolve(model, lr, [prompt]))[0]).save(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
