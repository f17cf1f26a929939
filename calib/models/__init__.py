"""Model zoo: float (torch) architectures whose module/key names match the
official checkpoints, so published weights load with ``strict=True``.

A registry mapping model names to constructors is added separately; until then
import the modules directly (``calib.models.edsr.EDSR``).
"""
