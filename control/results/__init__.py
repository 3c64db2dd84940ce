"""Signed-off results as DICOM objects (SR, SEG) and their delivery to PACS destinations."""
