"""Questions asked of a data set or a run: hyper-parameter search, backbone ranking, label-efficiency
curves, explanations, and the feature cache they share."""
