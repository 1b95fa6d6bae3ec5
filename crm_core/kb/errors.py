"""Errors of the knowledge base."""

from crm_core.errors import Conflict, ValidationFailed


class InvalidSolution(ValidationFailed):
    code = "invalid_solution"


class SolutionNotPublished(Conflict):
    code = "solution_not_published"
