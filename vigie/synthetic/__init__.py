"""Synthetic patients and documents, with no model and no database: the demo clinic's and the
guard's decoys'.

`clinic.build_clinic(seed)` draws a clinic (patients with valid INS, doctors, care, documents)
from one seed; one module per kind of document writes its content (`lab`, `imaging`,
`letters`, `prescriptions`, `certificates`) and `pdf` lays it out in Vigie's house style. The
demo seeds the database from it; the guard draws decoys from it with a seed nobody knows.
Production code may import this package, never `vigie.demo`.
"""
