from metarr_sync.cli import main

main()
