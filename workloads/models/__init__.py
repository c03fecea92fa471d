"""Model-building helpers shared by the model families: a MobileNet-v1 ONNX graph builder
(``mobilenet``), facts read from an ONNX file (``onnx_facts``), post-training int8
quantization (``quantize``) and a TensorFlow-free ``.tflite`` writer (``tflite_export``)."""
