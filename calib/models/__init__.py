"""Model zoo: float (torch) architectures whose module/key names match the
official checkpoints, so published weights load with ``strict=True``.

The registry (names, scales, checkpoint formats, I/O conventions) is
:mod:`calib.models.zoo`; the architectures live in one module each
(``calib.models.edsr.EDSR``, ...).
"""
