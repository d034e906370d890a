"""Image experiments: the digits evaluation classifier and its metrics."""
