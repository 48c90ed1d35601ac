"""The shared vocabulary, at the bottom of the layers: nothing here imports the project.

- `core.vocab`: the Commander's meta-actions, hazard kinds and command phrasings, and the driving
  thresholds the twin's driver and the kinematic labeler agree on;
- `core.windows`: a window's geometry (16 history and 64 future poses at 10 Hz) and Arrow
  fixed-list decoding;
- `core.displacement`: ADE/FDE at NAVSIM's and Alpamayo's horizons;
- `core.stats`: intervals over clips (the clip bootstrap) and paired comparisons.
"""
