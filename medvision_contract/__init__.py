"""MedVision's shared contract: what training, export, the Triton Python models and the
control plane must agree on, in one dependency-free package (numpy only).

- :mod:`medvision_contract.labels`: label names and orders (ChestX-ray14, BraTS regions and
  label values, MRI channel order, CT head haemorrhage labels) and age bands.
- :mod:`medvision_contract.regions`: BraTS label maps ↔ nested regions, region volumes.
- :mod:`medvision_contract.preprocess`: modality LUT, windowing, resizing, z-scores.
- :mod:`medvision_contract.ct_windows`: Hounsfield windowing of head CT slices into the
  network's channels (brain, subdural, bone; optional 2.5-D neighbours).
- :mod:`medvision_contract.cams`: class activation maps back onto the image grid, uint8.
- :mod:`medvision_contract.triton`: reading a Triton Python model's own config.

Nothing here imports torch, pandas or the control plane, so a Triton model folder needs
only this package (and numpy) on its path.
"""
