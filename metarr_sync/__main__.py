from metarr_sync import main

main()
