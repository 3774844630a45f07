"""Schema type model, code rendering and the readers/builders of schema libraries."""
from knowcoder_ray.schema.types import (
    BASE_CLASS, KINDS, Role, SchemaError, SchemaLibrary, SchemaType, is_class_name, is_role_name,
    norm_name, to_class_name, to_role_name,
)

__all__ = [
    "BASE_CLASS", "KINDS", "Role", "SchemaError", "SchemaLibrary", "SchemaType", "is_class_name",
    "is_role_name", "norm_name", "to_class_name", "to_role_name",
]
