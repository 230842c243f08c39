"""`view`: what a person watches to judge a relabel. Which episodes to show and why (episodes),
their per-frame series (V, A, threshold, adv_ind, intervention, task; the other side's V and
label and the flips with --compare), and the writers that put them beside the cameras: an MP4
(PyAV and Pillow, core dependencies) and a Rerun recording (the optional `view` extra).
Only reads the dataset.
"""
