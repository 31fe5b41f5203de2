"""People who use Vigie: doctors, IT administrators and the data protection officer."""
