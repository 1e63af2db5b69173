"""Deploy an encoder outside PyTorch: ``unicom-export`` / ``unicom.export_model``.

* ``export.py``: the whole export (graph, ``preprocess.json``, ``parity.json``, ``deploy.json``);
* ``graph.py``: torch → ONNX (``torch.onnx.export``, dynamic batch) or TorchScript (trace);
* ``head.py``: what is baked on top of the encoder (first-D cut or PCA, L2 normalisation);
* ``compact.py``: the PCA fit and the set it is fitted on;
* ``parity.py``: the exported graph against PyTorch on a fixed batch;
* ``preprocess.py``: the image → tensor recipe written for non-Python clients;
* ``runtime.py``: an export as an encoder (onnxruntime / ``torch.jit.load``);
* ``options.py``, ``cli.py``: the command.

The format of the folder is ``unicom.formats.deploy``. This package imports nothing itself, so
that ``unicom.pretrained.load`` can reach ``runtime.py`` without loading the exporter.
"""
