"""What the repository ships: the default detector and models with their recipe and scores, and samples."""
