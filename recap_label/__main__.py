from recap_label.cli import main

main()
