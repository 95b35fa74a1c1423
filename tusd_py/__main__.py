from tusd_py.cli import main

main()
