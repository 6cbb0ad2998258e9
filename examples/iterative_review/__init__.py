"""Iterative review: write, then revise until an llm_judge passes the draft or a cap is hit."""
