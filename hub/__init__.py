"""Command-line tools to publish SCOT models on the Hugging Face Hub."""
