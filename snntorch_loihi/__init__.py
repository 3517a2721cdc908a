"""snntorch-loihi."""
