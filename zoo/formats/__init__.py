"""Other projects' zoo layouts, read into symzoo rows (``symzoo import``); no Ray in here, nothing executed."""
