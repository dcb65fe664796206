"""Making a student genuinely smaller: structured width pruning and vocabulary trimming."""
