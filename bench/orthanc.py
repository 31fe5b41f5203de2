"""Orthanc, the medical-imaging server Vigie is compared with: install, configure, start, load.

The benchmark's payload (the same 200 KB PDF that nginx and Vigie serve) is wrapped as a DICOM
Encapsulated PDF Storage instance with pydicom, uploaded with `POST /instances` and fetched
back with `GET /instances/{id}/file` under Orthanc's own HTTP basic authentication.

Orthanc gets a configuration of its own (no Debian defaults, no plugins): storage and index in
the benchmark's temporary directory, authentication on with one random password, loopback
only, the DICOM listener off, no storage compression, and `OverwriteInstances` so that a
repeated upload stores the instance again instead of answering "AlreadyStored".
`HttpThreadsCount` stays at Orthanc's own default, 50 (more than enough for 2 cores; Orthanc's
HTTP server, CivetWeb, gives each keep-alive connection a thread of its own).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bench.payload import make_pdf
from bench.processes import Processes, find, tail

ORTHANC = "/usr/sbin/Orthanc"
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage
HTTP_THREADS = 50  # Orthanc's default; see the module docstring


@dataclass
class OrthancServer:
    """A running Orthanc with one uploaded instance."""

    port: int
    authorization: str  # the value of the Authorization header
    instance_id: str
    instance: bytes  # the DICOM file as uploaded (what /file must give back)
    process: subprocess.Popen[bytes]
    version: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/instances/{self.instance_id}/file"

    @property
    def header(self) -> str:
        return f"Authorization: {self.authorization}"

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": self.authorization}
        if content_type:
            headers["Content-Type"] = content_type
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        content = response.read()
        conn.close()
        return response.status, content

    def upload(self, instance: bytes) -> str:
        """`POST /instances`; the Orthanc id of the stored instance."""
        status, content = self.request("POST", "/instances", instance, "application/dicom")
        if status != 200:
            raise SystemExit(f"Orthanc refused the instance: {status} {content[:300]!r}")
        answer = json.loads(content)
        if answer.get("Status") not in {"Success", "AlreadyStored"}:
            raise SystemExit(f"Orthanc did not store the instance: {answer}")
        return str(answer["ID"])

    def count_instances(self) -> int:
        status, content = self.request("GET", "/statistics")
        if status != 200:
            raise SystemExit(f"Orthanc /statistics answered {status}")
        return int(json.loads(content)["CountInstances"])


def ensure_orthanc() -> str:
    """The Orthanc binary, installed from Debian's packages when missing."""
    if not Path(ORTHANC).exists() and not find("Orthanc"):
        print("installing orthanc from Debian's packages")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "orthanc"],
            check=True,
            env=env,
        )
        # The package starts its own service with Debian's configuration: not ours to run.
        subprocess.run(["systemctl", "stop", "orthanc"], check=False, capture_output=True)
    binary = ORTHANC if Path(ORTHANC).exists() else find("Orthanc")
    if binary is None:
        raise SystemExit("Orthanc is not installed and apt-get did not provide it")
    return binary


def wrap_pdf_as_dicom(pdf: bytes, *, sop_instance_uid: str | None = None) -> bytes:
    """`pdf` as a DICOM Encapsulated PDF Storage instance (Explicit VR Little Endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        UID,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    # The same study and series every time: one patient's lab results, as in Vigie's setup.
    study = generate_uid(entropy_srcs=["vigie-bench", "study"])
    series = generate_uid(entropy_srcs=["vigie-bench", "series"])
    instance = UID(sop_instance_uid) if sop_instance_uid else generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF_STORAGE)
    meta.MediaStorageSOPInstanceUID = instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = instance
    today = date.today().strftime("%Y%m%d")
    ds.StudyDate = ds.ContentDate = ds.AcquisitionDateTime = today
    ds.StudyTime = ds.ContentTime = "120000"
    ds.AccessionNumber = "BENCH-ACC-0001"
    ds.Modality = "DOC"
    ds.ConversionType = "WSD"
    ds.Manufacturer = "Vigie bench"
    ds.ReferringPhysicianName = ""
    ds.PatientName = "BANC^Essai"
    ds.PatientID = "BENCH-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "M"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "Bilan sanguin"
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    # OB of odd length gets a padding byte; the benchmark's PDF is 204,800 bytes (even).
    ds.EncapsulatedDocument = pdf
    ds.EncapsulatedDocumentLength = len(pdf)

    import io

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, little_endian=True, implicit_vr=False)
    return buffer.getvalue()


def orthanc_config(work: Path, http_port: int, dicom_port: int, password: str) -> dict[str, Any]:
    return {
        "Name": "VigieBench",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "StorageCompression": False,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "HttpThreadsCount": HTTP_THREADS,
        "KeepAlive": True,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {"bench": password},
        "DicomServerEnabled": False,
        "DicomPort": dicom_port,
        "OverwriteInstances": True,
        "Plugins": [],
        "SaveJobs": False,
    }


def start_orthanc(
    work: Path, procs: Processes, *, http_port: int, dicom_port: int, pdf: bytes | None = None
) -> OrthancServer:
    """Start Orthanc with its own configuration under `work`, upload one instance (the PDF
    wrapped as DICOM; the benchmark's PDF when `pdf` is None) and return the server."""
    binary = ensure_orthanc()
    root = work / "orthanc"
    for sub in ("storage", "index"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    config = root / "orthanc.json"
    config.write_text(
        json.dumps(orthanc_config(root, http_port, dicom_port, password), indent=2),
        encoding="utf-8",
    )
    log = root / "orthanc.log"
    process = procs.start([binary, f"--logdir={root}", str(config)], log)
    authorization = "Basic " + base64.b64encode(f"bench:{password}".encode()).decode()
    server = OrthancServer(http_port, authorization, "", b"", process, "")
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"Orthanc exited {process.returncode}:\n{tail(log)}")
        try:
            status, content = server.request("GET", "/system")
            if status == 200:
                server.version = str(json.loads(content).get("Version", "?"))
                break
            raise SystemExit(f"Orthanc /system answered {status}: {content[:200]!r}")
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"Orthanc did not answer within 60 s:\n{tail(log)}") from None
            time.sleep(0.2)
    if pdf is None:
        pdf = make_pdf()
    server.instance = wrap_pdf_as_dicom(pdf)
    server.instance_id = server.upload(server.instance)
    return server
