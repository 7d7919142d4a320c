"""LLM rephrasings of referring expressions (the RAVAR robustness study): see ``engine`` and ``stage``."""
from .checks import check_rephrasing, clean_output
from .engine import Backend, Cache, Job, Params, RephraseError, Runner, load_template, redact

__all__ = ["Backend", "Cache", "Job", "Params", "RephraseError", "Runner", "check_rephrasing", "clean_output",
           "load_template", "redact"]
