"""The demo clinic: synthetic patients, doctors and realistic PDFs. Demo mode only."""
