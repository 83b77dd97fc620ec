"""What `polyrank export` raises on purpose: one base class, so callers (the CLI, the demo,
benchmarks) can tell an export that was refused from a bug. Each keeps the built-in type a
caller may already catch (ValueError, FileExistsError)."""


class ExportError(Exception):
    """Base of every error the exporter raises on purpose."""


class ExportSettingsError(ExportError, ValueError):
    """A setting, a checkpoint or an input file is not usable as given."""


class DestinationExistsError(ExportError, FileExistsError):
    """The output exists and the settings do not say to replace it."""


class ParityError(ExportError):
    """The exported model scores differently from the reference beyond the tolerance."""


class QualityGateError(ExportError):
    """The candidate model missed a quality threshold."""


class PrecisionUnavailable(ExportError):
    """This machine cannot run the requested precision."""


class TensorRTUnavailable(ExportError):
    """TensorRT plans need an NVIDIA GPU and the tensorrt wheel."""


class TemplateError(ExportError):
    """A config template could not be filled into a valid Triton model config (a polyrank bug)."""
