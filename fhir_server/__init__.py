"""FHIR R4 server for French territorial care-coordination networks."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
