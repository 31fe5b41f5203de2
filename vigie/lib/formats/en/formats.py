"""English dates a European reader cannot misread: day before month, month in letters, 24 h.

Django's own English formats are American (12/07/2026 is 7 December there, 12 July here).
Selected by FORMAT_MODULE_PATH in settings; French keeps Django's French formats.
"""

DATE_FORMAT = "j F Y"  # 7 December 2026
SHORT_DATE_FORMAT = "j M Y"  # 7 Dec 2026
DATETIME_FORMAT = "j F Y, H:i"
SHORT_DATETIME_FORMAT = "j M Y, H:i"
TIME_FORMAT = "H:i"
MONTH_DAY_FORMAT = "j F"
YEAR_MONTH_FORMAT = "F Y"
FIRST_DAY_OF_WEEK = 1  # Monday
# Typed dates: ISO (the browser's date field) or day first, never month first.
DATE_INPUT_FORMATS = ["%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y"]
DATETIME_INPUT_FORMATS = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
]
