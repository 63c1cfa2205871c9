"""The demo models: trained on scikit-learn's bundled digits data (no download).

``demo.digits`` loads the data, ``demo.mlp`` trains the numpy MLP served as ONNX, and
``demo.cnn`` trains the Keras and PyTorch CNNs and publishes them through the converters.
Load tests and benchmarks import demo data from here, never from a converter module.
"""
