"""Nano VIST3A: the real vist3a classes at tiny configs, trained on a procedural 3D world, so that the whole
text-to-3D pipeline runs offline on a CPU.

- :mod:`vist3a.world`: the synthetic world (scenes, ray-caster, camera paths, captions, held-out split).
- :mod:`vist3a.nano.configs`: the tiny configs as plain data (13 frames of 64x64, AnySplat at 112 px, ...).
- :mod:`vist3a.nano.train_vae`, :mod:`~vist3a.nano.train_recon`, :mod:`~vist3a.nano.train_stitch`,
  :mod:`~vist3a.nano.train_generator`: one training recipe per stage (``vist3a nano train <stage>``);
  :mod:`vist3a.nano.recipes` runs them by name and in order.
- :mod:`vist3a.nano.weights`: the shipped weights (``load_nano_component``, ``nano_available``, ``MANIFEST.json``
  with sha256 checksums, ``install_components``).

Nothing heavy is imported here: ``vist3a.data`` imports the world through this package.
"""
