"""Retrieval: a retriever composes an encoder and an index directory."""

from dse.retrieve.results import AddReport, Failure, Hit
from dse.retrieve.retriever import Retriever

__all__ = ["AddReport", "Failure", "Hit", "Retriever"]
