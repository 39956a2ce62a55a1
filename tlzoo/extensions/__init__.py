"""Optional features of a run, each one module behind one protocol of hooks (``tlzoo.extensions.base``)."""
