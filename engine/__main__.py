from engine.cli.main import main

if __name__ == "__main__":  # not when a worker process (whatif) imports the main module
    raise SystemExit(main())
