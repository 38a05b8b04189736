from ctl.app import main

main()
