"""The library's values that the command lines offer and show in ``--help``, as plain literals:
parsing the arguments imports nothing heavy (no ONNX Runtime, OpenCV or PyAV).
tests/test_cli_help.py holds each equal to the library's own.
"""

BACKENDS = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt", "torch")
DEFAULT_THRESHOLD = 0.3  # the stitcher's minimum score of an emitted event
LIVE_PAGE_ADDRESS = "127.0.0.1:8080"  # --serve without HOST:PORT
EVIDENCE_PRE_SECONDS = 2.0  # clip before an event
EVIDENCE_POST_SECONDS = 2.0  # clip after an event
EVIDENCE_MAX_MB = 1024.0  # bound of the evidence folder
