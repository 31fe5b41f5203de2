"""HPRIM Santé files from laboratories: charset detection, parsing, NIR plausibility."""

from .identity import nir_contradiction
from .parser import HprimError, parse, patient_bytes
from .result import HprimFile, Observation, Party, PatientReport

__all__ = [
    "HprimError",
    "HprimFile",
    "Observation",
    "Party",
    "PatientReport",
    "nir_contradiction",
    "parse",
    "patient_bytes",
]
