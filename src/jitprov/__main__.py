from jitprov.cli.main import main

main()
