"""comp: a competition harness for multimodal, many-class product categorization."""

__version__ = "0.1.0"
