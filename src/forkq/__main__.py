from forkq.cli.main import main

main()
