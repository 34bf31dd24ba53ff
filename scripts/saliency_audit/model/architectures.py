"""What the workflow knows about each ``model.arch`` before building it (no torch import).

The config checks run when Snakemake starts, for every command (``-n`` included), where
importing PyTorch would cost seconds; ``models`` builds the networks and a test keeps
both in step.
"""

FEATURE_WIDTHS = {"simple_cnn": 128, "resnet18": 512}  # length of the penultimate vector (the PCA input)
ARCHS = tuple(FEATURE_WIDTHS)
TORCHVISION = "torchvision:"  # model.arch torchvision:<name>: a classification builder of torchvision.models
