"""The course's exceptions: one base, subclasses that also match the built-in a caller expects.

Every message says what went wrong, where (path or model id) and what to do next. The original
exception is always chained (`raise ... from exc`) so nothing is hidden from a curious learner.
"""

from __future__ import annotations


class CourseError(Exception):
    """Base class of every error the course helpers raise on purpose."""


class ModelBuildError(CourseError, RuntimeError):
    """A course model could not be built (missing source file, quantizer failure)."""


class ModelNotBuiltError(CourseError, FileNotFoundError):
    """A course model repo has not been built yet."""


class WeightFormatError(CourseError, ValueError):
    """The requested `load_format` matches no weight file in the model folder or repo."""


class LocalModelError(CourseError, FileNotFoundError):
    """A local model folder lacks a file vLLM needs (config.json, weights, tokenizer)."""


class EngineLoadError(CourseError, RuntimeError):
    """vLLM could not construct an engine for the given model and settings."""


class HubError(CourseError, RuntimeError):
    """The course hub could not start, stop or answer."""


class HubUnreachableError(HubError, ConnectionError):
    """HF_ENDPOINT points at a hub that does not answer (and HF_HUB_OFFLINE is not set)."""


class CacheSafetyError(CourseError, PermissionError):
    """A clean-up was asked to touch something outside the Hugging Face cache."""


class EnvCheckError(CourseError, ValueError):
    """The environment check was asked for something it does not know (profile, check name)."""


class CacheTargetError(CourseError, ValueError):
    """A cache helper was given something that names nothing in the cache (repo, revision, policy value)."""


class InsufficientDiskSpaceError(CourseError, OSError):
    """A download would not fit in the free space of the cache's disk."""


class PlotInputError(CourseError, ValueError):
    """A chart was given labels and values that do not match, or nothing to draw."""


class GradingCheckError(CourseError, AssertionError):
    """An exercise's independent check failed (nbgrader counts the test cell as failed)."""
