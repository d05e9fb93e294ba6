"""Commands and long-running jobs: argument parsing, configuration, starting and stopping things."""
