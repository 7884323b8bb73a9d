from tvae_lightning.cli.main import main

main()
