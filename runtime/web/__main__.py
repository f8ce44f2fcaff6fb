"""`python -m clipsr_runtime.web` is `clipsr-web`."""

from clipsr_runtime.web.cli import main

main()
