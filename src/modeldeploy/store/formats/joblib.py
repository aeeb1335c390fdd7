"""
The ``joblib`` format: a scikit-learn estimator (or any object) in a joblib file.

joblib is pickle underneath, so loading runs code the file names: the store
loads a joblib artifact only when the version is signed with its key or the
caller trusts it. Needs the ``joblib`` extra (scikit-learn brings joblib too).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import io
from typing import Any, Final

from ...errors import UntrustedPayloadError
from . import require

__all__ = ["JOBLIB_FORMAT", "JoblibFormat"]


class JoblibFormat:
    """
    Saves with ``joblib.dump``, loads with ``joblib.load``; **pickled**.

    .. versionadded:: 0.1.0
    """

    name: Final = "joblib"
    filename: Final = "model.joblib"
    pickled: Final = True

    def dump(self, model: Any, /) -> bytes:
        """Return the joblib file of *model*."""
        joblib = require("joblib", "joblib", self.name)
        buffer = io.BytesIO()
        joblib.dump(model, buffer)
        return buffer.getvalue()

    def load(self, data: bytes, /, *, trusted: bool) -> Any:
        """
        Return the object in *data*.

        Raises:
            UntrustedPayloadError: *trusted* is false: joblib would run the
                code the file names.
        """
        if not trusted:
            raise UntrustedPayloadError(
                "a joblib artifact runs code when loaded: sign the store with a key "
                "(MODELDEPLOY_STORE_KEY) or load it with trusted=True"
            )
        joblib = require("joblib", "joblib", self.name)
        return joblib.load(io.BytesIO(data))


JOBLIB_FORMAT: Final = JoblibFormat()
