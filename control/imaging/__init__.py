"""Turn DICOM frames, MRI volumes and model outputs into displayable images."""
