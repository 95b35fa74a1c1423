from tus_upload.cli import main

main()
