"""Images as a second item source: decoding, views, vision encoders."""
