"""Neural image compression (seed 004, Tellez et al.): slides as grids of patch codes.

``nic.codes`` (CodeGrid, write_codes, read_codes) is torch-free and is what napari's reader
uses; ``nic.encoders``, ``nic.encoder_train`` and ``nic.compress`` need torch. Nothing is imported
here eagerly, so ``import napari_xhisto.nic`` stays cheap.
"""
