"""The published JSON Schemas (``*.schema.json``); those of the typed formats are generated
from the models in ``collapse_eval.formats`` by ``python scripts/generate_schemas.py``."""
