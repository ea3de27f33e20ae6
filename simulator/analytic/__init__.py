"""Closed-form (analytic) engine, vectorized over layouts."""
