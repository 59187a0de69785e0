"""The verl version this plugin is written and tested against, checked on import."""

from __future__ import annotations

from importlib import metadata

TESTED_VERL = "0.9"
"""The verl minor version the plugin's hooks were written for and tested against (0.9.1)."""


def check_verl_version(version: str | None = None) -> str:
    """Raise ``ImportError`` unless the installed verl (or ``version``) is ``TESTED_VERL.*``.

    The plugin overrides private hook methods of ``RayPPOTrainer`` and works around a
    verl 0.9.1 bug; both change between verl minor versions, so another minor version is
    refused rather than silently mis-trained.
    """
    if version is None:
        try:
            version = metadata.version("verl")
        except metadata.PackageNotFoundError as err:
            raise ImportError("pgpo_verl needs verl: pip install 'pgpo[verl]' (verl=="
                              f"{TESTED_VERL}.*)") from err
    parts = version.split(".")
    if ".".join(parts[:2]) != TESTED_VERL:
        raise ImportError(
            f"pgpo_verl supports verl {TESTED_VERL}.x only (tested with 0.9.1), found verl "
            f"{version}: install 'verl=={TESTED_VERL}.*' (pip install 'pgpo[verl]'), or port "
            "the hooks in pgpo_verl/trainer.py and pgpo_verl/workaround.py to this version")
    return version
