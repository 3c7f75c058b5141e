"""Inference engines behind one narrow protocol (see ``base.Engine``)."""

from collapse_eval.engines.base import Engine, GenRequest, Message

__all__ = ["Engine", "GenRequest", "Message"]
