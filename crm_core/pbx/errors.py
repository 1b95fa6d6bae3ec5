"""Errors of the PBX users domain."""

from crm_core.errors import Conflict, NotFound, ValidationFailed


class UnknownPbx(ValidationFailed):
    code = "unknown_pbx"


class PbxUserTaken(Conflict):
    code = "pbx_user_taken"


class MappingNotFound(NotFound):
    code = "mapping_not_found"
