"""Code review: split a diff into units, review architecture and quality in parallel, report."""
