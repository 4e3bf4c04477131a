"""Other projects' zoo layouts, read into symzoo rows (``symzoo import``); no Ray in here, nothing executed."""

FORMATS = ("authors", "small-cnn-zoo", "dwsnets", "ray-tune")  # `symzoo import FORMAT`: the layouts this package reads
