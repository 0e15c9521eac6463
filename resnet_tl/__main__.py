"""`python -m resnet_tl` runs the same CLI as the `resnet-tl` script."""

from resnet_tl.cli import main

main()
