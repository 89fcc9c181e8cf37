"""Reading prompt / test-set files into one normalised record shape (see :mod:`.loading`)."""

from edgedistill.data.loading import SUPPORTED_FORMATS, load_records, record_id

__all__ = ["SUPPORTED_FORMATS", "load_records", "record_id"]
