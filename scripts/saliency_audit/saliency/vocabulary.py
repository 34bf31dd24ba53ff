"""The saliency stage's words, in one place: the states of a verdict and the names of the probe views.

Every table column and test that speaks of them uses these constants; the values are the strings
that the output tables hold.
"""

STATE_OK = "ok"  # scored
STATE_EMPTY_MAP = "empty_map"  # the ReLU'd map is zero everywhere: no positive evidence at the layer
STATE_EMPTY_OBJECT = "empty_object"  # the object region has no pixel: no object to keep, remove or score against
STATE_NO_BACKGROUND = "no_background"  # the object's part covers the whole image: nothing to fill from
STATE_NO_MARGIN = "no_margin"  # the predicted class ties with another: no margin to lose
STATE_UNCERTAIN = "uncertain"  # the margin is within what the fill alone does to it (the control): no verdict
STATE_NO_OBJECT_EXPECTED = "no_object_expected"  # predicted as a class with no object (saliency.object_classes)
PROBED_STATES = (STATE_OK, STATE_UNCERTAIN)  # the images shown to the model under every view

# The probes' views, as suffixes of their columns (margin<view>_<class>, prob<view>, accuracy<view>)
VIEW_IMAGE = ""
VIEW_OBJECT_ONLY = "_object_only"  # the background replaced
VIEW_BACKGROUND_ONLY = "_background_only"  # the object replaced
VIEWS = (VIEW_IMAGE, VIEW_OBJECT_ONLY, VIEW_BACKGROUND_ONLY)
