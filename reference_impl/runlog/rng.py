"""The global random generators a training step draws from, captured and restored, so
that a resumed run draws what an uninterrupted one would."""

import random
import warnings
from typing import Any

import numpy as np
import torch


def capture_rng_state() -> dict[str, Any]:
    """The state of every global generator a training step draws from: python ``random``,
    numpy's legacy global generator, torch's CPU generator and each CUDA device's.
    Plain values and tensors only, so it saves and loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_state(state: dict[str, Any], *, strict: bool = True) -> None:
    """Put back the generators saved by :func:`capture_rng_state`.

    With ``strict`` a state saved with CUDA generators cannot be restored on a machine
    with a different number of CUDA devices (ValueError); ``strict=False`` restores the
    CPU generators and warns that the CUDA ones were not restored.
    """
    missing = {"python", "numpy", "torch", "cuda"} - set(state)
    if missing:
        raise ValueError(f"state: not a capture_rng_state() result, missing {sorted(missing)}")
    cuda_states = state["cuda"]
    here = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda_states is not None and len(cuda_states) != here:
        message = (f"state['cuda']: saved with {len(cuda_states)} CUDA generator(s), "
                   f"this machine has {here}")
        if strict:
            raise ValueError(message + "; pass strict=False to restore the CPU generators only")
        warnings.warn(message + "; CUDA generators not restored", RuntimeWarning, stacklevel=2)
        cuda_states = None
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    keys = np.asarray(npst["keys"].numpy() if torch.is_tensor(npst["keys"]) else npst["keys"],
                      dtype=np.uint32)
    np.random.set_state((npst["kind"], keys, npst["pos"], npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    if cuda_states is not None:
        torch.cuda.set_rng_state_all(cuda_states)


__all__ = ["capture_rng_state", "restore_rng_state"]
