"""The Hugging Face Space: the SCOT demo, configured by the Space's variables (see README.md)."""

from modeling_scot.demo import create_app, launch_app

demo = create_app()

if __name__ == "__main__":
    launch_app(demo)
