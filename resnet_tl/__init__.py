"""resnet-tl: fine-tune Keras ResNets on image folders from a YAML recipe.

Importing this package imports neither Keras nor TensorFlow; the modules that
need them import them when called, which keeps ``resnet-tl --help`` fast.
"""

__version__ = "0.1.0"
