"""The trained network: backbone + the plugin's head, small serialisable layers, multi-task heads."""
