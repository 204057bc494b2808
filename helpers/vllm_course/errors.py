"""The course's exceptions: one base, subclasses that also match the built-in a caller expects."""


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


class HubError(CourseError, RuntimeError):
    """The course hub could not start, stop or answer."""


class HubUnreachableError(HubError, ConnectionError):
    """HF_ENDPOINT points at a hub that does not answer (and HF_HUB_OFFLINE is not set)."""


class CacheSafetyError(CourseError, PermissionError):
    """A clean-up was asked to delete something outside the Hugging Face cache (or the cache itself)."""


class EnvCheckError(CourseError, ValueError):
    """The environment check was asked for something it does not know (profile, check name)."""


class CacheTargetError(CourseError, ValueError):
    """A cache helper was given something that names nothing in the cache (repo, revision, table layout)."""


class InsufficientDiskSpaceError(CourseError, OSError):
    """A download would not fit in the free space of the cache's disk."""


class PlotInputError(CourseError, ValueError):
    """A chart was given labels and values that do not match, or nothing to draw."""


class GradingCheckError(CourseError, AssertionError):
    """An exercise's independent check failed (nbgrader counts the test cell as failed)."""


class BadModelIdError(CourseError, ValueError):
    """`model=` is neither an existing folder nor a valid Hub repo id."""


class ModelNotFoundError(CourseError, LookupError):
    """The hub has no repo with that id."""


class ModelRevisionError(CourseError, LookupError):
    """The repo exists but has no such branch, tag or commit."""


class GatedModelError(CourseError, PermissionError):
    """The repo is gated and the request carried no accepted token."""


class NotCachedError(CourseError, FileNotFoundError):
    """Offline mode, and the repo (or that revision of it) is not in the cache."""


class PartialSnapshotError(CourseError, FileNotFoundError):
    """Offline mode, and the cached snapshot lacks files the load needs."""


class QuantizationMismatchError(CourseError, ValueError):
    """`quantization=` contradicts what the checkpoint's config.json says."""


class CacheNotWritableError(CourseError, PermissionError):
    """The Hugging Face cache folder cannot be written, so nothing can be downloaded into it."""


class CorruptedWeightsError(CourseError, OSError):
    """A weight file does not match its hash, or is truncated."""


class GpuQuantizationError(CourseError, ValueError):
    """This device cannot run the quantization method with this dtype (kernel requirements)."""


class MissingKernelError(CourseError, RuntimeError):
    """vLLM's kernel library for this CPU lacks the op a quantized model runs on (W4A16 on AVX2)."""
