"""Official metrics, distributed benchmark evaluation and reports."""
