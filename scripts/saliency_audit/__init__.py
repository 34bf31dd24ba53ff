"""saliency-audit: audit an image dataset through a CNN's eyes (the library behind the workflow's rules)."""
