"""The tms-dropout console command; the library lives in theory/ and sim/."""
