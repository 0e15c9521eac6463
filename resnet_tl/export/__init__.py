"""Export: write a run's model in every format of `resnet_tl.formats`, check each in its runtime, write the manifest."""
