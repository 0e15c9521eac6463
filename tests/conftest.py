"""Test session set-up: quiet TensorFlow before anything imports it."""

from resnet_tl.kerasenv import quiet_tensorflow

quiet_tensorflow()
