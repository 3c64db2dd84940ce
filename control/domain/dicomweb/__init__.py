"""DICOMweb (PS3.18) under ``/dicomweb``: STOW-RS, QIDO-RS and WADO-RS over the stored,
de-identified DICOM studies. NIfTI studies are not DICOM and are never served here.

Modules: :mod:`.media` (content negotiation), :mod:`.multipart` (``multipart/related``
reading and writing), :mod:`.json_model` (DICOM JSON), :mod:`.query` (QIDO-RS query
strings), :mod:`.qido` (search), :mod:`.headers` (cached stored headers),
:mod:`.wado` (retrieve), :mod:`.stow` (store) and :mod:`.controllers` (the routes).
"""
