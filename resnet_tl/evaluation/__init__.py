"""Evaluation: metrics of a split, calibration figures, PNG plots, eval/<split>/ and report.html."""
