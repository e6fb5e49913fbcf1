"""The REST service: routes, schemas, batching, limits and metrics (no model code).

``tools/serve.py`` loads a model (a checkpoint or an exported file) and hands it to
:func:`create_app` as a :class:`LoadedModel`.
"""

from .app import create_app
from .identity import model_identity
from .settings import LoadedModel, ServeSettings

__all__ = ["LoadedModel", "ServeSettings", "create_app", "model_identity"]
