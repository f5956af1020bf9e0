"""Nano models: the real vist3a classes at tiny configs, trained on a procedural 3D world so that the whole
text-to-3D pipeline runs offline on a CPU. :mod:`vist3a.nano.world` is that world."""
