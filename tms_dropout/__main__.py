from tms_dropout.cli import main

main()
