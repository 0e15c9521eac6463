"""Models: the backbone table and its builders, the classifier around a backbone, pretrained weights,
saved-model loading and the batched forward pass every stage uses."""
