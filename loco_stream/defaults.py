"""Defaults that the library uses and the command lines show in ``--help``, kept in a module that
imports nothing: parsing the arguments imports nothing heavy (no ONNX Runtime, OpenCV or PyAV).
"""

BACKENDS = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt", "torch")
DEFAULT_THRESHOLD = 0.3  # the stitcher's minimum score of an emitted event
LIVE_PAGE_ADDRESS = "127.0.0.1:8080"  # --serve without HOST:PORT
EVIDENCE_PRE_SECONDS = 2.0  # clip before an event
EVIDENCE_POST_SECONDS = 2.0  # clip after an event
EVIDENCE_MAX_MB = 1024.0  # bound of the evidence folder
EVIDENCE_WIDTH = 640  # px: clips of wider frames are scaled down to this width
EVIDENCE_CPU_PERCENT = 8.0  # the clip encoder's bound, a share of the rest of the process
