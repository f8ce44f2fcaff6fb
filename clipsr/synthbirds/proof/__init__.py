"""Proof that the caption changes the picture, as numbers and a figure (the paper's Table IV and Fig. 8 on
SynthBirds).

On held-out birds (the test seeds, never used in training) at the model's scale, each bird captioned by one of
its phrasings drawn at random (seeded), as users write them, with the canonical caption as a second column:
- Table IV analogue: bicubic, a no-text model (optional), the full model: PSNR/SSIM (BasicSR convention) and
  part-colour accuracy over the parts the caption names (is each part's colour in the output nearest the
  caption's?).
- Text matters: the full model with the true caption vs another bird's caption, and vs a caption that names
  no colour ("a bird"), which should cost nothing against the no-text model.
- Editability (Fig. 8): the same LR with the caption changed in one part it names; how often that part follows
  the new colour, and how close the rest of the image stays to the unedited output.
- Wordings outside most training phrasings ("a bird with red crown", "red-crowned bird with blue wings",
  "crown: red"): crown and wing accuracy.
- A figure: LR | bicubic | SR (caption A) | SR (caption B, one part recoloured) | HR.

Three steps, one module each: `measure` (run the models, one record per bird), `report` (numbers, goal check,
markdown) and `figure`; the goals come from the model card (`goals`, torch-free so the command line can check
a card before loading any model); `run` does all three.
"""
